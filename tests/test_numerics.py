"""The tolerance rules (fastresnet.numerics), and that runtime code imports no test helper."""

import ast
from pathlib import Path

import pytest
import torch

from fastresnet.bench.suite import answer_error
from fastresnet.numerics import (
    OP_TOLERANCES, Tolerance, compare_to_reference, layer_mismatch, model_bound, op_mismatch,
)  # fmt: skip

PACKAGE = Path(__file__).resolve().parents[1] / "fastresnet"
# What only tests may import: the old test helper module, pytest, and tests/' own modules.
TEST_ONLY = {"fastresnet.testing", "pytest", "conftest", "conv_cases", "cuda_compile"}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute names (``from .. import x`` gives both the
    package and package.x, since x may be a module)."""
    package = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)[:-1]  # also for __init__.py
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def test_runtime_code_imports_no_test_helper():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        bad = {n for n in _imports(path) if n in TEST_ONLY or n.split(".")[0] in TEST_ONLY}
        if bad:
            found[str(path.relative_to(PACKAGE.parent))] = sorted(bad)
    assert found == {}
    assert "fastresnet.numerics" in _imports(PACKAGE / "triton" / "configs.py")  # the walk resolves `from .. import`


# -- the per-op rule ------------------------------------------------------------------------


def test_op_rule_is_atol_plus_rtol_times_ref():
    tol = Tolerance(atol=1e-3, rtol=1e-2)
    ref = torch.tensor([0.0, 1.0, -10.0, 100.0], dtype=torch.float64)
    inside = ref + 0.99 * (tol.atol + tol.rtol * ref.abs())
    assert op_mismatch(inside, ref, tol) is None
    assert op_mismatch(inside.float(), ref, tol) is None  # compared in float64, whatever the dtype
    outside = inside.clone()
    outside[2] = ref[2] - 1.01 * (tol.atol + tol.rtol * 10)
    message = op_mismatch(outside, ref, tol)
    assert message.startswith("1 of 4 elements beyond atol 0.001 x scale 1 + rtol 0.01 x |ref|; the worst at (2,)")
    # scale multiplies atol only: 10 x atol covers the element near zero, not the large one.
    near_zero = ref.clone()
    near_zero[0] = 5e-3
    assert op_mismatch(near_zero, ref, tol) is not None and op_mismatch(near_zero, ref, tol, scale=10) is None


def test_op_rule_takes_the_dtypes_row_and_rejects_nan_and_shape_changes():
    ref = torch.ones(3, dtype=torch.float64)
    off = ref + 1e-4  # beyond float32's 1e-5 + 1e-5, within float16's 2e-3 + 2e-3
    assert op_mismatch(off, ref, torch.float32) is not None
    assert op_mismatch(off, ref, torch.float16) is None
    assert op_mismatch(off, ref, OP_TOLERANCES[torch.float16]) is None
    assert op_mismatch(torch.tensor([1.0, float("nan"), 1.0]), ref, torch.float16).startswith("1 of 3 elements")
    infinite = torch.tensor([float("inf"), float("-inf")])
    assert op_mismatch(infinite, infinite.double(), torch.float32) is None
    assert op_mismatch(infinite, infinite.flip(0).double(), torch.float32) is not None
    assert op_mismatch(ref[:2], ref, torch.float32) == "shape (2,) differs from the reference's (3,)"


def test_the_autotuners_rule_keeps_its_old_bound():
    """4 x atol x the output scale (at least 1) wherever the reference is near zero, and
    rtol x |ref| on top where it is not."""
    atol = OP_TOLERANCES[torch.float16].atol
    ref = torch.tensor([0.0, 10.0, -10.0], dtype=torch.float64)
    assert layer_mismatch(ref + torch.tensor([3.9 * atol * 10, 0, 0]), ref, OP_TOLERANCES[torch.float16]) is None
    assert layer_mismatch(ref + torch.tensor([4.1 * atol * 10, 0, 0]), ref, OP_TOLERANCES[torch.float16]) is not None
    small = ref / 100  # output scale 0.1: atol stays relative to 1
    assert layer_mismatch(small + torch.tensor([3.9 * atol, 0, 0]), small, OP_TOLERANCES[torch.float16]) is None


# -- the whole-model rule -------------------------------------------------------------------


def test_model_rule_is_twice_eagers_error_plus_the_slack_and_the_float32_bound():
    ref64 = torch.tensor([[10.0, -3.0, 0.5]], dtype=torch.float64)
    eager = ref64 + 1e-3  # eager's own error 1e-3, output scale 10
    assert model_bound(1e-3, 10.0, torch.float16) == pytest.approx(2e-3 + 2e-3 * 10)
    assert model_bound(1e-3, 10.0, torch.float32) == pytest.approx(1e-4 * 10)  # the float32 bound wins
    assert model_bound(1e-3, 10.0, torch.float32, fp32_bound=False) == pytest.approx(2e-3 + 1e-5 * 10)
    fused = ref64 + 1.5e-3
    result = compare_to_reference(fused, eager, ref64, torch.float32)
    assert (result.fused_error, result.eager_error, result.scale) == pytest.approx((1.5e-3, 1e-3, 10.0))
    assert not result.ok
    assert compare_to_reference(fused, eager, ref64, torch.float32, fp32_bound=False).ok
    assert compare_to_reference(fused, eager, ref64, torch.float16).ok
    assert not compare_to_reference(fused * float("nan"), eager, ref64, torch.float16).ok
    with pytest.raises(ValueError, match="shapes differ"):
        compare_to_reference(fused[0], eager, ref64, torch.float32)


def test_the_bench_holds_fastresnet_to_the_float32_bound_and_peers_to_eagers_error():
    """A candidate 1.5e-3 off where eager (say with TF32) is 1e-3 off, at output scale 10:
    right for a peer (within twice eager's error), wrong for fastresnet (above 1e-4 x 10)."""
    ref64 = torch.tensor([[10.0, -3.0, 0.5]], dtype=torch.float64)
    eager, out = (ref64 + 1e-3).float(), (ref64 + 1.5e-3).float()
    assert answer_error(out, eager, ref64, torch.float32, "onnxruntime") is None
    assert answer_error(out, eager, ref64, torch.float32, "fastresnet-cpp-cpu").startswith(
        "wrong answer: max |out - fp64| = 0.0015 > 0.001 (eager's: 0.001; output scale 10)"
    )
    assert answer_error(ref64 + 3e-3, eager, ref64, torch.float32, "eager-channels-last").startswith("wrong answer")
