"""`fastresnet verify`: numerical agreement with eager, on random and on real data.

Random data: per model and backend, the error against an fp64 eager reference, judged by
the whole-model rule of fastresnet.numerics, and top-1 agreement. Real data: scikit-learn's
handwritten digits (shipped with the package, no download), upsampled to 32x32, on a
ResNet-18 trained briefly on them, so its BN statistics are real ones; accuracy and top-1
agreement of eager and fastresnet on held-out digits.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torchvision

from ..api import optimize
from ..explain import explain
from ..numerics import compare_to_reference, no_tf32
from .models import build_model


@dataclass
class VerifyRow:
    model: str
    backend: str
    dtype: str
    data: str
    max_abs_error: float
    relative_error: float  # max abs error over the output scale
    eager_max_abs_error: float
    bound: float
    top1_agreement: float
    passed: bool
    eager_accuracy: float | None = None
    fastresnet_accuracy: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _check(model, fast, x, dtype, name, backend, data) -> tuple[VerifyRow, torch.Tensor, torch.Tensor]:
    with torch.no_grad(), no_tf32():
        ref64 = copy.deepcopy(model).double()(x.double())
        eager = copy.deepcopy(model).to(dtype)(x.to(dtype))
        out = fast(x.to(dtype))
    result = compare_to_reference(out, eager, ref64, dtype)
    agreement = (out.argmax(1) == ref64.argmax(1)).float().mean().item()
    chosen = explain(fast).info.backend
    shown = chosen if backend == chosen else f"{chosen} ({backend})"
    row = VerifyRow(
        name, shown, str(dtype).removeprefix("torch."), data, result.fused_error,
        result.fused_error / max(result.scale, 1e-30), result.eager_error, result.bound, agreement, result.ok,
    )  # fmt: skip
    return row, out, eager


def verify_random(name: str, backend: str, dtype: torch.dtype, device: torch.device, image_size: int, batch: int = 4):
    model = build_model(name).to(device)
    fast = optimize(model, backend=backend, dtype=dtype)
    x = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    return _check(model, fast, x, dtype, name, backend, "random")[0]


def digits(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 8x8 digits as (N, 3, size, size) float32 images and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise RuntimeError("scikit-learn is not installed (pip install 'fastresnet[verify]')") from None
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = ((images - 0.5) / 0.25).repeat(1, 3, 1, 1)
    return images, torch.tensor(data.target)


def train_on_digits(steps: int, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A ResNet-18 trained for ``steps`` steps on 1500 digits; the 297 others are returned."""
    images, labels = digits()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)
    train, test = order[:1500], order[1500:]
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        batch = train[torch.randint(len(train), (64,), generator=generator)]
        loss = F.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), images[test], labels[test]


def verify_digits(backend: str, dtype: torch.dtype, device: torch.device, steps: int) -> VerifyRow:
    model, images, labels = train_on_digits(steps)
    model = model.to(device)
    fast = optimize(model, backend=backend, dtype=dtype)
    row, out, eager = _check(model, fast, images.to(device), dtype, "resnet18 (digits)", backend, "digits")
    row.eager_accuracy = (eager.argmax(1).cpu() == labels).float().mean().item()
    row.fastresnet_accuracy = (out.argmax(1).cpu() == labels).float().mean().item()
    return row


def markdown(rows: list[VerifyRow]) -> str:
    lines = [
        "# fastresnet verify",
        "",
        "Errors against an fp64 eager reference. Pass: error <= 2 x eager's own error in the same dtype"
        " + the dtype's slack, and for float32 at most 1e-4 of the output scale.",
        "",
        "| model | backend | dtype | data | max abs error | / output scale | eager's error | bound | top-1 agreement "
        "| accuracy eager / fastresnet | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        accuracy = "-" if r.eager_accuracy is None else f"{r.eager_accuracy:.3f} / {r.fastresnet_accuracy:.3f}"
        lines.append(
            f"| {r.model} | {r.backend} | {r.dtype} | {r.data} | {r.max_abs_error:.3g} | {r.relative_error:.3g} "
            f"| {r.eager_max_abs_error:.3g} | {r.bound:.3g} | {r.top1_agreement:.3f} | {accuracy} "
            f"| {'pass' if r.passed else 'FAIL'} |"
        )
    return "\n".join(lines) + "\n"
