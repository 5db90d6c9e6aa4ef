"""How close is close enough: the one tolerance table and the comparison rules built on it.

Used alike by the tests, `fastresnet verify`, `fastresnet bench` and the Triton autotuner.
The ground truth is the eager model (or op) in float64. Two rules, as in the
flash-attention tests:

* ops: ``|out - ref64| <= atol * scale + rtol * |ref64|`` elementwise, with the dtype's row of
  OP_TOLERANCES (``op_mismatch``). The table is for outputs of order 1 (``scale`` 1);
* whole models: the fused model's error against float64 must be at most twice the eager
  model's own error in the same dtype, plus ``MODEL_ATOL[dtype]`` times the output scale
  (max |ref64|). For float32 the product also promises an absolute bound: 1e-4 of the
  output scale (``compare_to_reference``).

Nothing here imports more than torch: runtime code (the bench, the autotuner) uses it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


# Per-op bounds against a float64 reference, for outputs of order 1.
OP_TOLERANCES = {
    torch.float32: Tolerance(atol=1e-5, rtol=1e-5),
    torch.float16: Tolerance(atol=2e-3, rtol=2e-3),
    torch.bfloat16: Tolerance(atol=1.6e-2, rtol=1.6e-2),
}

# Whole-model slack on top of "2 x eager's error", as a fraction of the output scale.
MODEL_ATOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
FP32_MODEL_BOUND = 1e-4  # float32: |fused - ref64| <= 1e-4 * output scale, always

# int8 has no eager model in its own dtype to measure against: its kernels must reproduce the
# int8 reference (ops/int8_reference.py) exactly, and a quantized model is judged against the
# float32 one on real data (`fastresnet verify --dtype int8`, the digits ResNet-18): held-out
# top-1 at most INT8_ACCURACY_DROP below float32's, logits within INT8_MODEL_ERROR of the
# output scale (measured there: 6.7e-3).
INT8_ACCURACY_DROP = 0.005
INT8_MODEL_ERROR = 0.05
# `fastresnet bench --dtype int8` times random-weight models on random input, where every
# engine's post-training quantization lands 2-7% of the output scale from float64 (measured:
# ResNet-18/34/50 at 224x224 2-4%, ResNet-18 at 64x64 6-7%; fastresnet, NNCF, ONNX Runtime and
# PT2E alike). It reports that error beside the speed and fails only a candidate past this
# bound: a broken int8 model (wrong scales, channels out of order) is off by the order of the
# output scale itself.
INT8_BENCH_ERROR = 0.25

# The autotuner's margin over the per-op rule; see layer_mismatch().
LAYER_MARGIN = 4


@contextlib.contextmanager
def no_tf32():
    """float32 references must be full float32: TF32 off for matmul and cuDNN."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def max_abs_error(out, ref) -> float:
    """Max |out - ref| over tensors or (nested) dicts/lists of tensors, compared in float64."""
    if isinstance(out, dict):
        return max(max_abs_error(out[k], ref[k]) for k in ref)
    if isinstance(out, (list, tuple)):
        return max(max_abs_error(o, r) for o, r in zip(out, ref))
    if out.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(out.shape)} against the reference's {tuple(ref.shape)}")
    return (out.double() - ref.double()).abs().max().item() if out.numel() else 0.0


def output_scale(ref) -> float:
    """max |ref| over tensors or (nested) dicts/lists of tensors."""
    if isinstance(ref, dict):
        return max(output_scale(v) for v in ref.values())
    if isinstance(ref, (list, tuple)):
        return max(output_scale(v) for v in ref)
    return ref.double().abs().max().item() if ref.numel() else 0.0


# -- the per-op rule ----------------------------------------------------------------------


def op_mismatch(
    out: torch.Tensor, ref64: torch.Tensor, tolerance: Tolerance | torch.dtype, scale: float = 1.0
) -> str | None:
    """Why ``out`` breaks the per-op rule ``|out - ref64| <= atol * scale + rtol * |ref64|``
    (elementwise, NaN never close, equal infinities close: torch.isclose's semantics, as
    torch.testing.assert_close applies them), or None if it keeps it. ``tolerance`` is a row
    of the table or the dtype whose row to take; ``scale`` the output scale atol is relative to."""
    if isinstance(tolerance, torch.dtype):
        tolerance = OP_TOLERANCES[tolerance]
    if out.shape != ref64.shape:
        return f"shape {tuple(out.shape)} differs from the reference's {tuple(ref64.shape)}"
    out64, ref64 = out.double(), ref64.double()
    atol = tolerance.atol * scale
    close = torch.isclose(out64, ref64, rtol=tolerance.rtol, atol=atol)
    bad = int((~close).sum().item())
    if not bad:
        return None
    error = (out64 - ref64).abs()
    allowed = atol + tolerance.rtol * ref64.abs()
    excess = torch.where(close, torch.zeros_like(error), torch.nan_to_num(error / allowed, nan=float("inf")))
    worst = tuple(int(i) for i in torch.unravel_index(excess.argmax(), excess.shape))
    return (
        f"{bad} of {out.numel()} elements beyond atol {tolerance.atol:g} x scale {scale:.3g} + rtol "
        f"{tolerance.rtol:g} x |ref|; the worst at {worst}: out {out64[worst].item():.6g}, ref "
        f"{ref64[worst].item():.6g}, |diff| {error[worst].item():.3g} > allowed {allowed[worst].item():.3g}"
    )


def layer_mismatch(out: torch.Tensor, ref64: torch.Tensor, tolerance: Tolerance) -> str | None:
    """The per-op rule as the Triton autotuner applies it to a candidate tile config's output
    on a real layer. It differs from the tests' in two ways, both loosening it:

    * atol is relative to the layer's output scale (max |ref64|, at least 1): the table is for
      the tests' outputs of order 1, while a real layer's outputs reach tens, and its rounding
      error grows with them;
    * a margin of LAYER_MARGIN on atol: the check is there to catch configs that miscompile
      (pytorch/pytorch#173068), whose errors are of the order of the outputs, not to police
      rounding (the tests do that). Real layers reduce over up to 4608 terms (3x3 x 512
      channels), the tests' over a few hundred, and a correct config wrongly rejected on a GPU
      costs the fastest tile or, if every one is rejected, the backend. The margin keeps the bound this check had before the
      rules were unified (4 x atol x scale against a float32 reference; now against float64).
    """
    return op_mismatch(out, ref64, tolerance, scale=LAYER_MARGIN * max(output_scale(ref64), 1.0))


# -- the whole-model rule -----------------------------------------------------------------


@dataclass
class ModelComparison:
    fused_error: float
    eager_error: float
    scale: float
    bound: float

    @property
    def ok(self) -> bool:
        return self.fused_error <= self.bound  # False for NaN


def model_bound(eager_error: float, scale: float, dtype: torch.dtype, fp32_bound: bool = True) -> float:
    """The largest error against float64 the whole-model rule allows, given eager's own (in
    int8, where eager is the float32 model: the bench's INT8_BENCH_ERROR of the scale)."""
    if dtype == torch.int8:
        return INT8_BENCH_ERROR * scale
    bound = 2 * eager_error + MODEL_ATOL[dtype] * scale
    if fp32_bound and dtype == torch.float32:
        bound = min(bound, FP32_MODEL_BOUND * scale)
    return bound


def compare_to_reference(
    fused_out, eager_out, ref64, dtype: torch.dtype, fp32_bound: bool = True
) -> ModelComparison:
    """Apply the whole-model rule for ``dtype`` to outputs already computed: ``fused_out``
    (the model under test) and ``eager_out`` (eager PyTorch in ``dtype``) against ``ref64``
    (eager in float64). ``fp32_bound=False`` leaves out the absolute float32 bound, which is
    fastresnet's own promise: the bench holds peers only to the part relative to eager."""
    scale = output_scale(ref64)
    fused_error = max_abs_error(fused_out, ref64)
    eager_error = max_abs_error(eager_out, ref64)
    return ModelComparison(fused_error, eager_error, scale, model_bound(eager_error, scale, dtype, fp32_bound))
