"""Why bf16 Winograd keeps its products in fp32: the error of each variant, simulated in float64.

    .venv/bin/python benchmarks/bf16_winograd_error.py

For each ResNet 3x3 layer shape, on bf16 inputs (after a ReLU) and a bf16 weight: the max error
against the float64 conv, over the output's scale, of eager bf16 (oneDNN), of Winograd with
the transformed weight and products in fp32 (what csrc/cpu/winograd_kernel.h runs), and of
Winograd with the transformed input V and weight U rounded to bf16, as a bf16 dot-product
GEMM (VDPBF16PS, AMX) would need them. Each output is rounded once to bf16.
"""

import torch
import torch.nn.functional as F

F64 = torch.float64


def transforms(m: int):
    """(G, B^T, A^T) of F(m x m, 3x3); the same points as csrc/cpu/layouts.cpp and winograd_kernel.h."""
    if m == 2:
        g = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    else:
        g = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
             [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]  # fmt: skip
        bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
              [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]  # fmt: skip
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    return (torch.tensor(t, dtype=F64) for t in (g, bt, at))


def winograd(x: torch.Tensor, w: torch.Tensor, m: int, bf16_products: bool) -> torch.Tensor:
    """conv2d(x, w, padding=1) by F(m x m, 3x3) in float64, V and U rounded to bf16 or fp32."""
    g, bt, at = transforms(m)
    n, _, h, width = x.shape
    tiles = F.pad(x, (1, 1, 1, 1)).unfold(2, m + 2, m).unfold(3, m + 2, m)  # N, C, tiles_h, tiles_w, T, T
    v, u = bt @ tiles @ bt.T, g @ w @ g.T
    rounded = torch.bfloat16 if bf16_products else torch.float32
    v, u = v.to(rounded).to(F64), u.to(rounded).to(F64)
    y = at @ torch.einsum("nchwij,kcij->nkhwij", v, u) @ at.T  # N, K, tiles_h, tiles_w, m, m
    return y.permute(0, 1, 2, 4, 3, 5).reshape(n, -1, h, width)


def main() -> None:
    torch.manual_seed(0)
    for c, size in [(64, 56), (128, 28), (256, 16), (512, 8)]:  # sizes divisible by 2 and 4
        x = torch.randn(1, c, size, size).relu().bfloat16().to(F64)
        w = (torch.randn(c, c, 3, 3) / (9 * c) ** 0.5).bfloat16().to(F64)
        exact = F.conv2d(x, w, padding=1)
        scale = exact.abs().max().item()

        def error(y: torch.Tensor) -> float:
            return (y.bfloat16().to(F64) - exact).abs().max().item() / scale

        eager = error(F.conv2d(x.bfloat16(), w.bfloat16(), padding=1).to(F64))
        cells = [f"eager bf16 {eager:.2e}"]
        for m in (2, 4):
            fp32, bf16 = error(winograd(x, w, m, False)), error(winograd(x, w, m, True))
            cells.append(f"F({m}x{m}) fp32 products {fp32:.2e}, bf16 products {bf16:.2e} ({bf16 / eager:.1f}x eager)")
        print(f"{c}@{size}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
