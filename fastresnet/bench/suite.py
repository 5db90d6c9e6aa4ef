"""Run the whole-model benchmark: every model x batch size x candidate, interleaved.

Every candidate's answer is checked before it is timed, by the whole-model rule of
fastresnet.numerics (against eager in float64); a candidate that cannot run is reported
with its reason, one that fails (or answers wrongly) is reported as failed with its error,
and the run goes on with the others.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..numerics import compare_to_reference, max_abs_error, output_scale
from . import peers
from .models import build_model, count_flops
from .runner import Samples, measure_interleaved


@dataclass
class Measurement:
    model: str
    candidate: str
    batch: int
    status: str  # "ok", "failed", "unavailable" or "left out"
    samples: Samples | None = None
    error: str | None = None
    peak_memory_mib: float | None = None
    setup_s: float | None = None  # build and first call: torch.compile's compile, Triton's autotuning
    error_of_scale: float | None = None  # max |out - fp64 eager| / the output scale, on the timed input


@dataclass
class BenchResult:
    measurements: list[Measurement] = field(default_factory=list)
    flops_per_image: dict[str, int] = field(default_factory=dict)


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = max(total, 1), 0, stream

    def step(self, label: str) -> None:
        self.done += 1
        filled = int(30 * self.done / self.total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {label:50.50s}")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own, above the bar (which the next step redraws)."""
        self.stream.write(f"\r{text:90s}\n")
        self.stream.flush()


class _Guarded:
    """Calls a candidate until it first raises; keeps the error and then does nothing, so
    one failing candidate cannot stop the interleaved rounds of the others."""

    def __init__(self, run: Callable, x: torch.Tensor):
        self.run, self.x, self.error = run, x, None

    def __call__(self):
        if self.error is None:
            try:
                return self.run(self.x)
            except Exception as error:  # reported, not raised: the run goes on
                self.error = f"{type(error).__name__}: {error}"
        return None


def answer_error(out, eager_out, ref64, dtype: torch.dtype, candidate: str) -> str | None:
    """Why candidate ``candidate``'s ``out`` is a wrong answer, or None if it is right: the
    whole-model rule, with ``eager_out`` the eager model as this run times it. Peers are held
    only to the part relative to eager's error, not to the float32 bound fastresnet promises:
    eager itself runs TF32 convs on CUDA by default (as users run it), and that is a
    candidate's precision, not a wrong answer."""
    result = compare_to_reference(out, eager_out, ref64, dtype, fp32_bound=peers.is_fastresnet(candidate))
    if result.ok:
        return None
    return (
        f"wrong answer: max |out - fp64| = {result.fused_error:.3g} > {result.bound:.3g} "
        f"(eager's: {result.eager_error:.3g}; output scale {result.scale:.3g})"
    )


# int8 candidates are calibrated on this many random batches of the timed shape: their speed
# does not depend on the ranges (accuracy on real data is `fastresnet verify --dtype int8`'s).
CALIBRATION_BATCHES = 4


def calibration_batches(x: torch.Tensor) -> list[torch.Tensor]:
    return [
        torch.randn(x.shape, generator=torch.Generator().manual_seed(1000 + i)).to(x.device)
        for i in range(CALIBRATION_BATCHES)
    ]


def reference64(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model in float64 on ``x``'s device, on ``x`` as the candidates get it."""
    return copy.deepcopy(model).to(device=x.device, dtype=torch.float64)(x.double())


def run_benchmark(
    models: list[str],
    batch_sizes: list[int],
    image_size: int,
    dtype: torch.dtype,
    device: torch.device,
    candidates: list[str],
    repeats: int,
    warmup: int,
    progress: Progress | None = None,
    left_out: dict[str, str] | None = None,
) -> BenchResult:
    """``left_out`` maps candidates that could run but were left out to why; they are
    reported for every model and batch like the others, and never built."""
    result = BenchResult()
    for name in models:
        model = build_model(name)
        result.flops_per_image[name] = count_flops(model, image_size)
        for batch in batch_sizes:
            x = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(batch))
            x = x.to(device=device, dtype=torch.float32 if dtype == torch.int8 else dtype)  # int8 models take float
            result.measurements += _measure_one(
                name, model, batch, x, dtype, device, candidates, repeats, warmup, progress
            )  # fmt: skip
            for candidate, why in (left_out or {}).items():
                result.measurements.append(Measurement(name, candidate, batch, "left out", error=why))
            if progress:
                progress.step(f"{name} batch {batch}")
    return result


def _measure_one(name, model, batch, x, dtype, device, candidates, repeats, warmup, progress=None) -> list[Measurement]:
    done, runs, memory, setup, errors = [], {}, {}, {}, {}
    calibration = calibration_batches(x) if dtype == torch.int8 else None
    if any(peers.is_torch_compile(c) for c in candidates):
        # A fresh dynamo cache per group: the earlier groups' compiled models are gone, and
        # without this dynamo would take a new batch size for a recompile and trace it with
        # a dynamic batch (automatic dynamic shapes), and stop compiling at its recompile
        # limit after a few groups.
        torch._dynamo.reset()
    with torch.inference_mode():
        expected = peers.build("eager", model, dtype, device, x)(x)
        ref64 = reference64(model, x)
        for candidate in candidates:
            start = time.perf_counter()
            try:
                run = peers.build(candidate, model, dtype, device, x, calibration)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats(device)
                out = run(x)  # also the first (compiling) call
                problem = answer_error(out, expected, ref64, dtype, candidate)
                errors[candidate] = max_abs_error(out, ref64) / output_scale(ref64)
                if device.type == "cuda":
                    memory[candidate] = torch.cuda.max_memory_allocated(device) / 2**20
                    torch.cuda.synchronize()
                setup[candidate] = time.perf_counter() - start
            except peers.Unavailable as reason:
                done.append(Measurement(name, candidate, batch, "unavailable", error=str(reason)))
                continue
            except Exception as error:  # a failing candidate is reported, and the run goes on
                done.append(Measurement(name, candidate, batch, "failed", error=f"{type(error).__name__}: {error}"))
                if progress:
                    progress.note(f"{name} batch {batch}: {candidate} failed after {time.perf_counter() - start:.1f} s")
                continue
            if progress:
                # On its own line, so that a run cut short still shows what took the time.
                progress.note(f"{name} batch {batch}: {candidate} set up in {setup[candidate]:.1f} s (build, first call)")
            if problem:
                done.append(Measurement(name, candidate, batch, "failed", error=problem))
                continue
            runs[candidate] = _Guarded(run, x)
        if runs:
            samples = measure_interleaved(runs, rounds=repeats, warmup=warmup)
    for candidate, guarded in runs.items():
        if guarded.error:
            done.append(Measurement(name, candidate, batch, "failed", error=guarded.error))
        else:
            done.append(
                Measurement(
                    name, candidate, batch, "ok", samples[candidate], None, memory.get(candidate), setup[candidate],
                    errors[candidate],
                )
            )  # fmt: skip
    return done
