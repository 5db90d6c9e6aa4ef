"""Tile configs for the Triton conv: candidates per shape class, autotuning, and a disk cache.

* ``conv_configs()`` lists the candidates for a layer's shape class (never its batch).
* On a GPU, the first call for a layer shape times every candidate and keeps the fastest
  one whose output matches a reference conv: a config is checked for correctness, not only
  speed, because implicit-GEMM templates can miscompile at some settings
  (pytorch/pytorch#173068: Inductor's conv template at num_warps=8).
* Winners are stored in a plain JSON file per GPU, torch and Triton version, under
  FASTRESNET_CACHE_DIR (default ~/.cache/fastresnet), so a second start is instant. A
  corrupt or foreign file is ignored with a warning.
* FASTRESNET_TRITON_CONFIG="BLOCK_M,BLOCK_N,BLOCK_K,num_warps,num_stages" pins one config
  (for tests and experiments); under the interpreter the first candidate is used.
* float32 runs in full IEEE precision unless FASTRESNET_ALLOW_TF32=1.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import numerics

ENV_PIN = "FASTRESNET_TRITON_CONFIG"
ENV_ALLOW_TF32 = "FASTRESNET_ALLOW_TF32"
ENV_CACHE_DIR = "FASTRESNET_CACHE_DIR"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class ConvConfig:
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int

    def __str__(self) -> str:
        return f"{self.block_m},{self.block_n},{self.block_k},{self.num_warps},{self.num_stages}"

    @classmethod
    def parse(cls, text: str) -> "ConvConfig":
        try:
            values = [int(v) for v in text.split(",")]
            config = cls(*values)
        except (TypeError, ValueError):
            raise ValueError(
                f"expected a config as BLOCK_M,BLOCK_N,BLOCK_K,num_warps,num_stages (e.g. 64,64,32,4,3), got {text!r}"
            ) from None
        blocks = (config.block_m, config.block_n, config.block_k)
        if any(b < 16 or b & (b - 1) for b in blocks) or config.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"config {text!r}: blocks must be powers of two >= 16 and num_warps a power of two <= 16")
        return config


def conv_configs(c_in_per_group: int, c_out_per_group: int) -> list[ConvConfig]:
    """The candidate tiles for a conv's shape class, best guess first."""
    # BLOCK_K = 64 spills registers (fp32 badly) in the GPU compile check: 32 is the ceiling.
    block_k = 16 if c_in_per_group <= 16 else 32
    if c_out_per_group <= 32:  # ResNeXt's per-group channels: a narrow GEMM
        block_n = 16 if c_out_per_group <= 16 else 32
        return [ConvConfig(128, block_n, block_k, 4, 3), ConvConfig(64, block_n, block_k, 4, 3)]
    return [
        ConvConfig(128, 64, block_k, 4, 3),
        ConvConfig(64, 64, block_k, 4, 4),
        ConvConfig(128, 128, block_k, 8, 3),  # num_warps=8 on non-1x1 convs: checked, see above
    ]


@dataclass(frozen=True)
class Layer:
    """A representative conv layer (padding k // 2, dilation 1) of the ResNet family."""

    c_in: int
    c_out: int
    kernel: int
    stride: int
    groups: int
    size: int  # input height and width


# One layer for every branch of conv_configs(): the GPU compile check builds on these.
REPRESENTATIVE_LAYERS = [
    Layer(3, 64, 7, 2, 1, 224),  # the stem
    Layer(128, 128, 3, 1, 32, 56),  # ResNeXt-50 32x4d, first stage: 4 channels per group
    Layer(1024, 1024, 3, 1, 32, 7),  # ResNeXt-50 32x4d, last stage: 32 channels per group
    Layer(64, 64, 3, 1, 1, 56),  # BasicBlock / Bottleneck 3x3
    Layer(256, 64, 1, 1, 1, 56),  # Bottleneck 1x1
]


def all_conv_configs() -> list[tuple[Layer, ConvConfig]]:
    """Every config the factory can hand out, each with a layer that gets it."""
    seen = {}
    for layer in REPRESENTATIVE_LAYERS:
        for config in conv_configs(layer.c_in // layer.groups, layer.c_out // layer.groups):
            seen.setdefault((config, layer.kernel), (layer, config))
    return list(seen.values())


def input_precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and os.environ.get(ENV_ALLOW_TF32) == "1":
        return "tf32"
    return "ieee"


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def conv_key(x, weight, stride, padding, dilation, groups: int, has_residual: bool, relu: bool) -> str:
    """A layer's shape class and epilogue: everything that picks the tile, except the batch."""
    c_out, c_in_g, kh, kw = weight.shape
    layout = "nhwc" if x.is_contiguous(memory_format=torch.channels_last) else "other"
    return (
        f"{str(x.dtype).removeprefix('torch.')}|cin={c_in_g}|cout={c_out}|groups={groups}|k={kh}x{kw}"
        f"|stride={list(stride)}|pad={list(padding)}|dil={list(dilation)}|hw={x.shape[2]}x{x.shape[3]}"
        f"|residual={int(has_residual)}|relu={int(relu)}|{layout}|{input_precision(x.dtype)}"
    )


class ConfigCache:
    """Tuned configs of one GPU, torch and Triton version, in memory and in a JSON file."""

    def __init__(self, path: Path, identity: dict):
        self.path = path
        self.identity = identity
        self.entries: dict[str, ConvConfig] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
                raise ValueError("unknown format")
            if data.get("identity") != self.identity:
                raise ValueError(f"written for {data.get('identity')}, not for {self.identity}")
            self.entries = {key: ConvConfig.parse(value) for key, value in data["configs"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            warnings.warn(f"fastresnet: ignoring the Triton autotune cache {self.path}: {error}", stacklevel=2)
            self.entries = {}

    def get(self, key: str) -> ConvConfig | None:
        return self.entries.get(key)

    def put(self, key: str, config: ConvConfig) -> None:
        self.entries[key] = config
        data = {"format": CACHE_FORMAT, "identity": self.identity, "configs": {k: str(v) for k, v in self.entries.items()}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(partial, self.path)  # atomic: a reader never sees half a file
        except OSError as error:
            warnings.warn(f"fastresnet: could not write the Triton autotune cache {self.path}: {error}", stacklevel=2)


_CACHES: dict[str, ConfigCache] = {}


def cache_for(device: torch.device) -> ConfigCache:
    import triton

    name = torch.cuda.get_device_name(device)
    identity = {
        "gpu": name,
        "capability": list(torch.cuda.get_device_capability(device)),
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{name}-torch{torch.__version__}-triton{triton.__version__}").strip("-")
    if slug not in _CACHES:
        directory = Path(os.environ.get(ENV_CACHE_DIR, Path.home() / ".cache" / "fastresnet"))
        _CACHES[slug] = ConfigCache(directory / f"triton-conv-{slug}.json", identity)
    return _CACHES[slug]


def choose_conv_config(args: tuple, launch: Callable) -> ConvConfig:
    """The config for this call: pinned, cached, or tuned now (GPU only)."""
    pinned = os.environ.get(ENV_PIN)
    if pinned:
        return ConvConfig.parse(pinned)
    x, weight, bias, residual, y, stride, padding, dilation, groups, relu = args
    candidates = conv_configs(weight.shape[1], weight.shape[0] // groups)
    if interpreting() or x.device.type != "cuda":
        return candidates[0]
    cache = cache_for(x.device)
    key = conv_key(x, weight, stride, padding, dilation, groups, residual is not None, relu)
    config = cache.get(key)
    if config is None:
        config = autotune(args, launch, candidates)
        cache.put(key, config)
    return config


def autotune(args: tuple, launch: Callable, candidates: list[ConvConfig]) -> ConvConfig:
    """The fastest candidate whose output keeps the per-op rule (numerics.layer_mismatch)
    against the reference conv in float64."""
    import triton.testing

    from ..ops import reference as reference_ops

    x, weight, bias, residual, y, stride, padding, dilation, groups, relu = args
    residual64 = residual.double() if residual is not None else None
    reference = reference_ops.conv2d_bias_act(
        x.double(), weight.double(), bias.double(), residual64, stride, padding, dilation, groups, relu
    )
    # TF32 keeps float16's 10-bit mantissa: hold it to float16's tolerance.
    tolerance = numerics.OP_TOLERANCES[torch.float16 if input_precision(x.dtype) == "tf32" else x.dtype]
    timings, failures = {}, []
    for config in candidates:
        scratch = torch.empty_like(y)
        try:
            launch(x, weight, bias, residual, scratch, stride, padding, dilation, groups, relu, config)
        except Exception as error:  # a config that does not compile or run is not a candidate
            failures.append(f"{config}: {type(error).__name__}: {error}")
            continue
        problem = numerics.layer_mismatch(scratch, reference, tolerance)  # NaN is never close
        if problem:
            failures.append(f"{config}: {problem}")
            continue
        call = lambda c=config: launch(x, weight, bias, residual, scratch, stride, padding, dilation, groups, relu, c)
        timings[config] = triton.testing.do_bench(call, warmup=5, rep=20)
    if failures:
        warnings.warn("fastresnet: Triton conv configs rejected: " + "; ".join(failures), stacklevel=3)
    if not timings:
        raise RuntimeError("fastresnet: no Triton conv config gave correct results: " + "; ".join(failures))
    return min(timings, key=timings.get)
