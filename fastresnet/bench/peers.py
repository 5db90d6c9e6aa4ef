"""The candidates a benchmark compares: eager PyTorch, the engines users would use instead,
and fastresnet on each backend.

Each builder returns a callable that takes the input batch; one that cannot run here
raises Unavailable with the reason, so the report can say why it is missing.
"""

from __future__ import annotations

import copy
import io
from typing import Callable

import torch
from torch import nn

from .. import backends
from ..api import optimize

PEERS = ("eager", "eager-channels-last", "torch-compile", "onnxruntime", "openvino")

# torch.compile in a named mode, on any device. Not in the default set: on a GPU each
# max-autotune compile of ResNet-50 takes minutes. `torch-compile` itself is the strongest
# setting per device (max-autotune on CUDA; the default mode with freezing on CPU).
TORCH_COMPILE_MODES = {
    "torch-compile-max-autotune": "max-autotune",
    "torch-compile-reduce-overhead": "reduce-overhead",  # CUDA graphs: CUDA only
}

# Peers that cannot be capped to an instruction set from outside, and why: `fastresnet bench
# --cpu-isa` leaves them out. The other peers run on oneDNN, ATen, MKL and Inductor's
# generated C++, which all take the caps it sets in the environment.
UNCAPPABLE_PEERS = {
    "onnxruntime": "ONNX Runtime's MLAS kernels are picked from CPUID alone",
    "openvino": "OpenVINO follows ONEDNN_MAX_CPU_ISA in its oneDNN convs only; "
    "its own JIT kernels and its MLAS GEMM are picked from CPUID",
}


class Unavailable(Exception):
    """A candidate that cannot run here; the message says why."""


def candidate_names() -> list[str]:
    return [*PEERS, *TORCH_COMPILE_MODES, "fastresnet", *(f"fastresnet-{name}" for name in backends.BACKENDS)]


def check_candidate_name(name: str) -> str:
    if name not in candidate_names():
        raise ValueError(f"unknown backend {name!r}; valid backends are {', '.join(candidate_names())}")
    return name


def is_fastresnet(name: str) -> bool:
    return name.startswith("fastresnet")


def is_torch_compile(name: str) -> bool:
    return name == "torch-compile" or name in TORCH_COMPILE_MODES


def build(
    name: str, model: nn.Module, dtype: torch.dtype, device: torch.device, example: torch.Tensor,
    calibration: list[torch.Tensor] | None = None,
) -> Callable:  # fmt: skip
    """A callable running ``model`` as candidate ``name`` on inputs like ``example``; in int8,
    quantized on ``calibration`` by the candidate's own tools (int8_peers.py)."""
    check_candidate_name(name)
    if dtype == torch.int8:
        from . import int8_peers  # here: it builds on this module

        return int8_peers.build(name, model, device, example, calibration)
    model = copy.deepcopy(model).to(device=device)
    if is_fastresnet(name):
        backend = name.removeprefix("fastresnet").removeprefix("-") or "auto"
        try:
            # On this private copy, in place; folding from the original precision, then cast.
            return optimize(model, backend=backend, dtype=dtype, inplace=True)
        except RuntimeError as error:  # the backend cannot run here: its reasons
            raise Unavailable(str(error)) from None
    model = model.to(dtype=dtype)
    if name == "eager":
        return model
    if name == "eager-channels-last":
        model = model.to(memory_format=torch.channels_last)
        return lambda x: model(x.contiguous(memory_format=torch.channels_last))
    if is_torch_compile(name):
        return torch_compile(model, device, TORCH_COMPILE_MODES.get(name))
    if name == "openvino":
        return _openvino(model, device, example)
    return _onnxruntime(model, device, example)


def torch_compile(model: nn.Module, device: torch.device, mode: str | None = None) -> Callable:
    """torch.compile in ``mode``; None is the `torch-compile` peer: max-autotune on CUDA, the
    default mode on CPU. Static shapes (dynamic=False), as a deployment at one batch size
    compiles, whatever batch sizes were compiled before in this process."""
    import torch._inductor.config as inductor_config

    if mode == "reduce-overhead" and device.type != "cuda":
        raise Unavailable("torch.compile mode reduce-overhead replays CUDA graphs: CUDA only")
    if device.type == "cuda":
        return torch.compile(model, mode=mode or "max-autotune", dynamic=False)
    # On CPU, freezing folds BN and pre-packs weights: the strongest inference setting.
    compiled = torch.compile(model, mode=mode, dynamic=False)

    def run(x):
        with inductor_config.patch(freezing=True):
            return compiled(x)

    return run


def _onnxruntime(model: nn.Module, device: torch.device, example: torch.Tensor) -> Callable:
    import_onnxruntime()
    if device.type != "cpu":
        raise Unavailable("the onnxruntime peer is measured on CPU only")
    if example.dtype != torch.float32:
        raise Unavailable(
            f"ONNX Runtime's CPU provider has no {str(example.dtype).removeprefix('torch.')} convolution "
            "(its MLAS kernels are float32 and int8): measured in float32 only"
        )
    return onnxruntime_runner(onnx_export(model, example))


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise Unavailable("onnxruntime is not installed (pip install 'fastresnet[peers]')") from None
    return onnxruntime


def onnx_export(model: nn.Module, example: torch.Tensor) -> bytes:
    """``model`` as ONNX, its input named x and its output y, shapes fixed to ``example``'s."""
    buffer = io.BytesIO()
    try:
        torch.onnx.export(model, (example,), buffer, input_names=["x"], output_names=["y"], dynamo=False)
    except Exception as error:  # the exporter raises many kinds
        raise Unavailable(f"ONNX export failed: {type(error).__name__}: {error}") from None
    return buffer.getvalue()


def onnxruntime_runner(onnx_model: bytes) -> Callable:
    """A CPU session of ``onnx_model`` on torch's thread count, as a callable on tensors."""
    onnxruntime = import_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # ORT's threads otherwise spin after each run and slow down whatever is timed next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def _openvino(model: nn.Module, device: torch.device, example: torch.Tensor) -> Callable:
    if device.type != "cpu" or example.dtype not in OPENVINO_PRECISION:
        raise Unavailable("the openvino peer is measured on CPU in float32 and bfloat16")
    # OpenVINO takes the float32 model and float32 input, and runs it in the precision its
    # hint names: the way its users get bfloat16 (numpy has no bfloat16 to feed it).
    converted = openvino_convert(model.float(), example.float())
    # Pinned: on CPUs with AVX512_BF16 or AMX the CPU plugin otherwise runs float32 models in
    # bfloat16 (openvino_default_precision() says what it would choose here).
    return openvino_runner(converted, {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[example.dtype]}, example.dtype)


def openvino_convert(model: nn.Module, example: torch.Tensor):
    """The float32 ``model`` as an OpenVINO model, its input shape fixed to ``example``'s."""
    try:
        import openvino
    except ImportError:
        raise Unavailable("openvino is not installed (pip install 'fastresnet[peers]')") from None
    try:
        # Through torch.export (not the deprecated TorchScript trace), with the input shape
        # fixed, as ONNX Runtime gets it: static shapes plan best.
        program = torch.export.export(model, (example,))
        return openvino.convert_model(program, input=[tuple(example.shape)])
    except Exception as error:  # export and conversion raise many kinds
        raise Unavailable(f"OpenVINO conversion failed: {type(error).__name__}: {error}") from None


def openvino_runner(converted, config: dict, dtype: torch.dtype = torch.float32) -> Callable:
    """``converted`` compiled for the CPU with ``config``, on torch's thread count and with the
    latency hint (one stream using all the threads: the setting for one request at a time)."""
    import openvino

    config = {**config, "INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"}
    compiled = openvino.Core().compile_model(converted, "CPU", config)
    # The compiled model's outputs are fresh arrays each call (not views of a reused buffer).
    return lambda x: torch.from_numpy(compiled(x.float().contiguous().numpy())[0]).to(dtype)


# The openvino peer's INFERENCE_PRECISION_HINT per benchmark dtype.
OPENVINO_PRECISION = {torch.float32: "f32", torch.bfloat16: "bf16"}


def openvino_default_precision() -> str | None:
    """The precision OpenVINO's CPU plugin chooses by itself for a float32 model on this CPU
    (its INFERENCE_PRECISION_HINT when none is given), or None without OpenVINO."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
