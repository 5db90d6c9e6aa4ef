"""The modules of an int8 model: each calls one int8 op (ops/schemas.py INT8_SCHEMAS).

Between them flow uint8 tensors whose scale and zero point were fixed by calibration
(fastresnet/quantization): each module holds, as plain numbers, those of the tensors it reads
and writes, so nothing is looked up at run time, and gives them to its state_dict as its extra
state, so that a state_dict loaded into a model quantized on other batches brings its own. The
model's input is quantized once, on entry (QuantizeInput); the global average pool hands float32
to the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..ops import weight_layout as weight_layouts
from .op_holder import OpHolder


@dataclass(frozen=True)
class QParams:
    """A uint8 tensor's quantization: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    def as_state(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point}

    @staticmethod
    def from_state(state: dict | None) -> QParams | None:
        if state is None:
            return None
        if not isinstance(state, dict) or set(state) != {"scale", "zero_point"}:
            raise ValueError(f"expected qparams {{'scale': float, 'zero_point': int}}, got {state!r}")
        return QParams(float(state["scale"]), int(state["zero_point"]))


class _SavesQParams(OpHolder):
    """An op holder whose qparams (plain attributes) travel in its state_dict as its extra
    state: without them a state_dict loaded into a model calibrated on other batches would
    pair the loaded multipliers with the model's own zero points, a silently wrong answer.
    These methods are for a module of one tensor's qparams, as ``scale`` and ``zero_point``."""

    def get_extra_state(self) -> dict:
        return QParams(self.scale, self.zero_point).as_state()

    def set_extra_state(self, state: dict) -> None:
        loaded = QParams.from_state(state)
        self.scale, self.zero_point = loaded.scale, loaded.zero_point

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):  # fmt: skip
        try:
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                          error_msgs)  # fmt: skip
        except ValueError as error:  # from set_extra_state: reported as load_state_dict reports a wrong shape
            error_msgs.append(f"{prefix}_extra_state: {error}")


class QuantizeInput(_SavesQParams):
    """float -> uint8 with the model input's calibrated (scale, zero point); NaN and infinite
    input is refused with a clear error (it has no uint8 value). Also converts to
    channels_last once, as the float models' first conv does."""

    def __init__(self, qparams: QParams, *, op: Callable, backend: str, channels: int):
        super().__init__(op, backend)
        self.scale, self.zero_point, self.channels = qparams.scale, qparams.zero_point, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"int8 model input: expected (N, {self.channels}, H, W), got {shape}")
        return self.op(x.contiguous(memory_format=torch.channels_last), self.scale, self.zero_point)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}, zero_point={self.zero_point}, backend={self.backend!r}"


class QuantizedConv2d(_SavesQParams):
    """A BN-folded conv with int8 weights (per output channel), bias, optional uint8 residual
    and ReLU, requantized to uint8 in its epilogue (ops/int8_reference.py gives the arithmetic).

    Buffers: ``weight`` int8 (C_out, C_in/groups, KH, KW); ``weight_scale`` (C_out,);
    ``multiplier`` = s_in * weight_scale / s_out and ``bias`` = folded bias / s_out, float32;
    ``compensation`` = input zero point * each output channel's weight sum, int32; the input's,
    output's and residual's qparams as its extra state. Where the
    backend reads a packed weight (``weight_layout``, e.g. "avx2:int8-7bit"), it is the
    buffer ``packed_weight``, made from ``weight`` here and again on load where the tier it
    was packed for cannot run (``__setstate__``)."""

    def __init__(
        self,
        weight: torch.Tensor,
        weight_scale: torch.Tensor,
        bias: torch.Tensor,
        *,
        input: QParams,
        output: QParams,
        residual: QParams | None,
        stride,
        padding,
        dilation,
        groups: int,
        relu: bool,
        op: Callable,
        backend: str,
        weight_layout: str = weight_layouts.LOGICAL,
    ):
        super().__init__(op, backend)
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", weight_scale.float())
        multiplier = (input.scale * weight_scale.double() / output.scale).float()
        self.register_buffer("multiplier", multiplier)
        self.register_buffer("bias", (bias.double() / output.scale).float())
        sums = weight.to(torch.int64).sum(dim=(1, 2, 3))
        self.register_buffer("compensation", (input.zero_point * sums).to(torch.int32))
        self._set_qparams(input, output, residual)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.groups, self.relu = groups, relu
        self.out_channels = weight.shape[0]
        self._pack(weight_layout)

    def _set_qparams(self, input: QParams, output: QParams, residual: QParams | None) -> None:
        self.input, self.output, self.residual = input, output, residual
        self.residual_multiplier = residual.scale / output.scale if residual else 0.0

    def get_extra_state(self) -> dict:
        return {name: q and q.as_state() for name, q in (("input", self.input), ("output", self.output),
                                                          ("residual", self.residual))}  # fmt: skip

    def set_extra_state(self, state: dict) -> None:
        if (not isinstance(state, dict) or set(state) != {"input", "output", "residual"}
                or state["input"] is None or state["output"] is None):  # fmt: skip
            raise ValueError(f"expected the qparams of 'input', 'output' and 'residual' (or None), got {state!r}")
        residual = QParams.from_state(state["residual"])
        if (residual is None) != (self.residual is None):
            raise ValueError(
                f"saved from a conv {'with' if residual else 'without'} a residual, "
                f"loaded into one {'with' if self.residual else 'without'}"
            )
        self._set_qparams(QParams.from_state(state["input"]), QParams.from_state(state["output"]), residual)

    def _pack(self, weight_layout: str) -> None:
        self.weight_layout = weight_layout
        packed = None if weight_layout == weight_layouts.LOGICAL else weight_layouts.pack(self.weight, self.groups, weight_layout)
        self.register_buffer("packed_weight", packed, persistent=False)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        # The packed copy follows the loaded weight, in its tier's layout for the weight's range.
        tier = weight_layouts.parse(self.weight_layout, "QuantizedConv2d").tier
        self._pack(weight_layouts.for_tier_int8(tier, self.weight) if tier else weight_layouts.LOGICAL)

    def __setstate__(self, state):
        super().__setstate__(state)
        tier = weight_layouts.parse(self.weight_layout, "QuantizedConv2d").tier
        if tier is None:
            return
        from .. import _ext, backends  # here, not at import: backends imports this package

        if _ext.tier_runs_here(tier):
            return
        self._pack(backends.cpu_kernels_backend().int8_weight_layout(self.weight))  # packed where another tier ran

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if (residual is None) != (self.residual is None):
            raise ValueError(
                f"int8 conv: calibrated {'with' if self.residual else 'without'} a residual, "
                f"called {'with' if residual is not None else 'without'} one"
            )
        return self.op(
            x,
            self.weight if self.packed_weight is None else self.packed_weight,
            self.multiplier,
            self.bias,
            self.compensation,
            residual,
            self.residual_multiplier,
            self.residual.zero_point if self.residual else 0,
            self.input.zero_point,
            self.output.zero_point,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.relu,
            self.weight_layout,
        )

    def extra_repr(self) -> str:
        c_out, c_in_g, kh, kw = self.weight.shape
        return (
            f"{c_in_g * self.groups}, {c_out}, kernel_size={(kh, kw)}, stride={self.stride}, padding={self.padding}, "
            f"groups={self.groups}, relu={self.relu}, input={self.input}, output={self.output}, "
            f"residual={self.residual}, weight_layout={self.weight_layout!r}, backend={self.backend!r}"
        )


class QuantizedMaxPool2d(OpHolder):
    """Max pool on uint8: exact, the output keeps the input's scale and zero point."""

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode: bool, *, op: Callable, backend: str):
        super().__init__(op, backend)
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation, self.ceil_mode = tuple(padding), tuple(dilation), ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)


class DequantizeGlobalAvgPool2d(_SavesQParams):
    """uint8 (N, C, H, W) -> float32 (N, C, 1, 1): the mean, dequantized, for the classifier."""

    def __init__(self, qparams: QParams, *, op: Callable, backend: str):
        super().__init__(op, backend)
        self.scale, self.zero_point = qparams.scale, qparams.zero_point

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x, self.scale, self.zero_point)[:, :, None, None]
