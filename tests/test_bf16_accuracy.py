"""bfloat16 accuracy on CPU (issue #18, item 5): every model the bench knows holds the
whole-model rule against float64, and `fastresnet verify --dtype bfloat16` judges the digits
ResNet-18 by how often its predictions agree with the float32 eager model's."""

import copy
import json

import pytest
import torch

import fastresnet
from fastresnet import _ext
from fastresnet.bench import cli
from fastresnet.bench.models import MODEL_NAMES, build_model
from fastresnet.bench.verify import keeps_fp32_predictions
from fastresnet.numerics import compare_to_reference, no_tf32

# What `auto` takes in bfloat16 on CPU: onednn where the CPU has AMX, the C++ CPU kernels elsewhere.
AUTO_BF16 = "onednn" if _ext.cpu_features().get("amx_bf16") else "cpp-cpu"


@pytest.mark.parametrize("backend", ["auto", "cpp-cpu", "reference"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bfloat16_model_holds_the_whole_model_rule(name, backend):
    model = build_model(name)  # realistic BN statistics, measured on 64x64 images
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    fast = fastresnet.optimize(model, backend=backend, dtype=torch.bfloat16)
    with torch.no_grad(), no_tf32():
        ref64 = copy.deepcopy(model).double()(x.double())
        eager = copy.deepcopy(model).bfloat16()(x.bfloat16())
        out = fast(x.bfloat16())  # an optimized bf16 model takes bf16 input
    assert fastresnet.explain(fast).info.backend == (AUTO_BF16 if backend == "auto" else backend)
    assert out.dtype == torch.bfloat16 and out.shape == ref64.shape
    result = compare_to_reference(out, eager, ref64, torch.bfloat16)
    assert result.ok, result


def test_verify_digits_in_bfloat16_reports_agreement_with_float32(tmp_path):
    argv = ["verify", "--dtype", "bfloat16", "--models", "resnet18", "--image-size", "32", "--digits-steps", "20",
            "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    status = cli.main(argv)
    rows = json.loads((tmp_path / "verify.json").read_text())
    assert [r["data"] for r in rows] == ["random", "digits"]
    assert status == (0 if all(r["passed"] for r in rows) else 1)
    random_row, digits = rows
    # The agreement with float32 is a real-data figure: the random row has none.
    assert random_row["eager_agreement_with_fp32"] is None and random_row["fastresnet_agreement_with_fp32"] is None
    eager_agreement, fast_agreement = digits["eager_agreement_with_fp32"], digits["fastresnet_agreement_with_fp32"]
    assert 0.0 <= eager_agreement <= 1.0 and 0.0 <= fast_agreement <= 1.0
    error_ok = digits["max_abs_error"] <= digits["bound"]
    assert digits["passed"] == (error_ok and fast_agreement >= eager_agreement)
    assert digits["fastresnet_accuracy"] > 0.5  # it learned something real, and bf16 kept it
    text = (tmp_path / "verify.md").read_text()
    assert f"| resnet18 (digits) | {AUTO_BF16} (auto) | bfloat16 | digits |" in text
    assert f"| {eager_agreement:.3f} / {fast_agreement:.3f} |" in text
    assert "| top-1 vs fp32 eager: eager / fastresnet |" in text


def test_the_digits_rule_needs_both_the_error_and_the_agreement():
    assert keeps_fp32_predictions(True, eager_agreement=0.98, fastresnet_agreement=0.98)
    assert keeps_fp32_predictions(True, eager_agreement=0.98, fastresnet_agreement=0.99)
    # Within the error bound, yet one prediction fewer kept than eager bf16 keeps: a failure.
    assert not keeps_fp32_predictions(True, eager_agreement=0.98, fastresnet_agreement=0.98 - 1 / 297)
    assert not keeps_fp32_predictions(False, eager_agreement=0.98, fastresnet_agreement=1.0)
