"""`fastresnet verify`: numerical agreement with eager, on random and on real data.

Random data: per model and backend, the error against an fp64 eager reference, judged by
the whole-model rule of fastresnet.numerics, and top-1 agreement. Real data: scikit-learn's
handwritten digits (shipped with the package, no download), upsampled to 32x32, on a
ResNet-18 trained briefly on them, so its BN statistics are real ones; accuracy of eager and
fastresnet on held-out digits, and how often each one's top-1 agrees with the float32 eager
model's: eager in the run's dtype (the same model cast, unfused) against fastresnet in it. A
digits row passes only if fastresnet agrees at least as often as eager does: in bfloat16 or
float16 fusion must cost no predictions beyond what the dtype itself costs; in float32 eager's
agreement is 1 by definition, so fastresnet must predict as eager float32 on every digit.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torchvision

from ..api import optimize
from ..nn.int8 import QuantizedConv2d
from ..quantization import quantize
from ..explain import explain
from ..numerics import INT8_ACCURACY_DROP, INT8_MODEL_ERROR, compare_to_reference, no_tf32
from . import int8_peers
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
    # Digits only: top-1 agreement with the float32 eager model's predictions, of eager in
    # this dtype (the same model cast, unfused) and of fastresnet in it.
    eager_agreement_with_fp32: float | None = None
    fastresnet_agreement_with_fp32: float | None = None
    # A peer's row (int8: NNCF's model in the fastresnet columns), shown for comparison: its
    # result does not decide verify's.
    peer: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def top1_agreement(out: torch.Tensor, ref: torch.Tensor) -> float:
    """The fraction of samples whose top-1 class is the same in ``out`` and ``ref``."""
    return (out.argmax(1) == ref.argmax(1)).float().mean().item()


def _check(model, fast, x, dtype, name, backend, data) -> tuple[VerifyRow, torch.Tensor, torch.Tensor]:
    with torch.no_grad(), no_tf32():
        ref64 = copy.deepcopy(model).double()(x.double())
        eager = copy.deepcopy(model).to(dtype)(x.to(dtype))
        out = fast(x.to(dtype))
    result = compare_to_reference(out, eager, ref64, dtype)
    agreement = top1_agreement(out, ref64)
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


def keeps_fp32_predictions(error_ok: bool, eager_agreement: float, fastresnet_agreement: float) -> bool:
    """The digits row's rule: the whole-model error rule, and fastresnet's top-1 agrees with
    the float32 eager model's at least as often as eager's own in the same dtype does."""
    return error_ok and fastresnet_agreement >= eager_agreement


def verify_digits(backend: str, dtype: torch.dtype, device: torch.device, steps: int) -> VerifyRow:
    model, images, labels = train_on_digits(steps)
    model, images = model.to(device), images.to(device)
    fast = optimize(model, backend=backend, dtype=dtype)
    row, out, eager = _check(model, fast, images, dtype, "resnet18 (digits)", backend, "digits")
    with torch.no_grad(), no_tf32():
        fp32 = model(images)  # the trained float32 model itself: optimize() and _check() used copies
    row.eager_accuracy = (eager.argmax(1).cpu() == labels).float().mean().item()
    row.fastresnet_accuracy = (out.argmax(1).cpu() == labels).float().mean().item()
    row.eager_agreement_with_fp32 = top1_agreement(eager, fp32)
    row.fastresnet_agreement_with_fp32 = top1_agreement(out, fp32)
    row.passed = keeps_fp32_predictions(row.passed, row.eager_agreement_with_fp32, row.fastresnet_agreement_with_fp32)
    return row


def verify_int8_digits(
    backend: str, trained: tuple, range_estimator: str = "minmax", calibration_images: int = 512, weight_bits: int | None = None
) -> VerifyRow:
    """The digits ResNet-18 (``trained``, as train_on_digits() returns it) in int8, calibrated
    on ``calibration_images`` of its training digits: held-out accuracy against float32 (at
    most numerics.INT8_ACCURACY_DROP lower), agreement with float32's top-1, and the logits'
    error against float64 (at most numerics.INT8_MODEL_ERROR of the output scale). The
    "eager" columns are float32's. ``weight_bits`` as quantize()'s (None: the backend's default);
    the row names the width the weights got."""
    model, images, labels = trained
    fast = quantize(model, int8_calibration(calibration_images), backend=backend, range_estimator=range_estimator,
                    weight_bits=weight_bits)  # fmt: skip
    largest = max(int(m.weight.to(torch.int16).abs().max()) for m in fast.modules() if isinstance(m, QuantizedConv2d))
    bits = 7 if largest <= 64 else 8
    name = f"{explain(fast).info.backend}{' (auto)' if backend == 'auto' else ''}, {bits}-bit weights"
    return _int8_row(model, fast, images, labels, name)


def verify_nncf_int8_digits(trained: tuple, calibration_images: int = 512) -> VerifyRow:
    """The same digits model and calibration digits, quantized by NNCF for OpenVINO
    (``nncf.quantize`` with its defaults, as the int8 bench's openvino candidate): the peer
    row fastresnet's int8 accuracy is read against. Raises Unavailable without nncf."""
    model, images, labels = trained
    calibration = int8_calibration(calibration_images)
    run = int8_peers.openvino_nncf(model, calibration[0], calibration)
    batch = len(calibration[0])  # the OpenVINO model's input shape is fixed to the calibration batch's

    def in_batches(x: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([x, x[: -len(x) % batch]])  # repeats the first images to whole batches
        return torch.cat([run(chunk) for chunk in padded.split(batch)])[: len(x)]

    row = _int8_row(model, in_batches, images, labels, "openvino + nncf")
    row.peer = True
    return row


def int8_calibration(images: int, batch: int = 32) -> list[torch.Tensor]:
    """The first ``images`` training digits, in batches of ``batch``."""
    return list(digits()[0][_training_order()[:images]].split(batch))


def _int8_row(model, run, images, labels, backend: str) -> VerifyRow:
    with torch.no_grad(), no_tf32():
        ref64 = copy.deepcopy(model).double()(images.double())
        fp32, out = model(images), run(images)
    scale = ref64.abs().max().item()
    error = (out.double() - ref64).abs().max().item()
    row = VerifyRow(
        model="resnet18 (digits)",
        backend=backend,
        dtype="int8",
        data="digits",
        max_abs_error=error,
        relative_error=error / scale,
        eager_max_abs_error=(fp32.double() - ref64).abs().max().item(),
        bound=INT8_MODEL_ERROR * scale,
        top1_agreement=top1_agreement(out, ref64),
        passed=False,
        eager_accuracy=(fp32.argmax(1) == labels).float().mean().item(),
        fastresnet_accuracy=(out.argmax(1) == labels).float().mean().item(),
        eager_agreement_with_fp32=1.0,
        fastresnet_agreement_with_fp32=top1_agreement(out, fp32),
    )
    row.passed = error <= row.bound and row.fastresnet_accuracy >= row.eager_accuracy - INT8_ACCURACY_DROP
    return row


def _training_order(seed: int = 0) -> torch.Tensor:
    """The digits train_on_digits() trained on (its first 1500), in its order."""
    return torch.randperm(len(digits()[0]), generator=torch.Generator().manual_seed(seed))[:1500]


def markdown(rows: list[VerifyRow]) -> str:
    lines = [
        "# fastresnet verify",
        "",
        "Errors against an fp64 eager reference. Pass: error <= 2 x eager's own error in the same dtype"
        " + the dtype's slack, and for float32 at most 1e-4 of the output scale. Digits rows also:"
        " fastresnet's top-1 agrees with the float32 eager model's at least as often as eager's own in the"
        " same dtype (the same model cast, unfused: 1 in float32, where it is the float32 model). int8 rows:"
        " \"eager\" is the float32 model; pass: error <= the int8 bound, and held-out accuracy at most"
        f" {INT8_ACCURACY_DROP:g} below float32's. A \"peer\" row is another engine's int8 model (in the"
        " fastresnet columns) on the same calibration digits, for comparison; it does not decide the result.",
        "",
        "| model | backend | dtype | data | max abs error | / output scale | eager's error | bound | top-1 vs fp64 "
        "| top-1 vs fp32 eager: eager / fastresnet | accuracy eager / fastresnet | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        accuracy = "-" if r.eager_accuracy is None else f"{r.eager_accuracy:.3f} / {r.fastresnet_accuracy:.3f}"
        agreement = (
            "-"
            if r.eager_agreement_with_fp32 is None
            else f"{r.eager_agreement_with_fp32:.3f} / {r.fastresnet_agreement_with_fp32:.3f}"
        )
        lines.append(
            f"| {r.model} | {r.backend} | {r.dtype} | {r.data} | {r.max_abs_error:.3g} | {r.relative_error:.3g} "
            f"| {r.eager_max_abs_error:.3g} | {r.bound:.3g} | {r.top1_agreement:.3f} | {agreement} | {accuracy} "
            f"| {('peer: ' if r.peer else '') + ('pass' if r.passed else 'FAIL')} |"
        )
    return "\n".join(lines) + "\n"
