"""The candidates of `fastresnet bench --dtype int8`: each engine's own post-training
quantization of the float32 model, on the same calibration batches, run as its users run it.

- ``fastresnet`` (and ``fastresnet-NAME``): fastresnet.quantize, on auto's backend or NAME's.
- ``openvino``: NNCF's ``nncf.quantize`` with its defaults on the converted model (per-channel
  symmetric weights, per-tensor activations, its bias correction), compiled as the float peer.
- ``onnxruntime``: ``quantize_static`` in the QDQ format, per-channel int8 weights and uint8
  activations (min/max ranges, its defaults), on the CPU provider.
- ``torch-compile``: PT2E (torchao's prepare_pt2e / convert_pt2e) with the X86 Inductor
  quantizer's default config, then torch.compile with freezing, which lowers the quantized
  convs to oneDNN's.
- ``eager``: the float32 model, the baseline the others are timed and judged against.

All take and return float32: the input is quantized inside each model.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..quantization import quantize
from . import peers
from .peers import Unavailable

# What --dtype int8 means for the float-only candidates.
FLOAT_ONLY = {
    "eager-channels-last": "no int8 form: the int8 run's float32 baseline is eager",
    "torch-compile-max-autotune": "int8 is measured through PT2E under the default torch-compile",
    "torch-compile-reduce-overhead": "int8 is measured through PT2E under the default torch-compile",
}


def build(name: str, model: nn.Module, device: torch.device, example: torch.Tensor, calibration: list) -> Callable:
    """Candidate ``name`` in int8, calibrated on ``calibration`` (float32 batches like ``example``)."""
    if device.type != "cpu":
        raise Unavailable("int8 is measured on CPU only")
    if name in FLOAT_ONLY:
        raise Unavailable(FLOAT_ONLY[name])
    model = copy.deepcopy(model).float().eval()
    if name == "eager":
        return model
    if peers.is_fastresnet(name):
        backend = name.removeprefix("fastresnet").removeprefix("-") or "auto"
        try:
            return quantize(model, calibration, backend=backend)
        except RuntimeError as error:  # the backend cannot run here, or has no int8 kernels
            raise Unavailable(str(error)) from None
    if name == "openvino":
        return openvino_nncf(model, example, calibration)
    if name == "onnxruntime":
        return _onnxruntime_qdq(model, example, calibration)
    return _pt2e_inductor(model, example, calibration)


def openvino_nncf(model: nn.Module, example: torch.Tensor, calibration: list) -> Callable:
    return peers.openvino_runner(nncf_quantized(model, example, calibration), {})


def nncf_quantized(model: nn.Module, example: torch.Tensor, calibration: list):
    """The OpenVINO model of ``model`` after ``nncf.quantize`` (its defaults) on ``calibration``."""
    try:
        import nncf
    except ImportError:
        raise Unavailable("nncf is not installed (pip install 'fastresnet[peers]')") from None
    converted = peers.openvino_convert(model, example)
    return nncf.quantize(converted, nncf.Dataset([x.numpy() for x in calibration]), subset_size=len(calibration))


def _onnxruntime_qdq(model: nn.Module, example: torch.Tensor, calibration: list) -> Callable:
    peers.import_onnxruntime()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.left = iter(calibration)

        def get_next(self):
            x = next(self.left, None)
            return None if x is None else {"x": x.numpy()}

    with tempfile.TemporaryDirectory() as folder:
        float_path, int8_path = Path(folder, "float.onnx"), Path(folder, "int8.onnx")
        float_path.write_bytes(peers.onnx_export(model, example))
        quantize_static(
            str(float_path), str(int8_path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
        return peers.onnxruntime_runner(int8_path.read_bytes())


def _pt2e_inductor(model: nn.Module, example: torch.Tensor, calibration: list) -> Callable:
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError:
        raise Unavailable("torchao is not installed (pip install 'fastresnet[peers]'): torch's PT2E quantization") from None
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    # Strict (dynamo) export: the non-strict trace gives each torchvision block's one ReLU
    # module, called twice, a single source partition with two outputs, which the quantizer's
    # conv + add + ReLU pattern refuses ("Input partition has more than one output node").
    prepared = prepare_pt2e(torch.export.export(model, (example,), strict=True).module(), quantizer)
    with torch.no_grad():
        for x in calibration:
            prepared(x)
    return peers.torch_compile(convert_pt2e(prepared), torch.device("cpu"))
