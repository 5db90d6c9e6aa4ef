"""Time several candidates interleaved, so that machine noise hits them all alike.

Each round runs every candidate once, in a fresh random order (seeded, so runs repeat); a
slow spell on a shared machine then widens every candidate's spread instead of biasing one
candidate's median. A random order rather than a rotation: a rotation keeps the same
neighbours, so a candidate that leaves the machine busy (ONNX Runtime's spinning threads)
would always slow down the same successor. And each timed call directly follows an untimed
call of the same candidate, so that every engine is timed in its own steady state (its worker
threads awake, its weights in cache), never right after another engine: measured on a
2-vCPU Zen 3, OpenVINO called right after fastresnet (torch's OpenMP workers spin on after
each parallel region) ran ResNet-50 7-10% slower than right after itself. Report medians
with p20/p80, and ratios of medians from one run.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Samples:
    seconds: tuple[float, ...]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    @property
    def p20(self) -> float:
        return self.quantile(0.2)

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p80(self) -> float:
        return self.quantile(0.8)


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def measure_interleaved(
    candidates: dict[str, Callable[[], object]], rounds: int = 20, warmup: int = 3, lead_in: int = 1
) -> dict[str, Samples]:
    """Call each candidate ``warmup`` times, then time ``rounds`` interleaved rounds, each timed
    call right after ``lead_in`` untimed calls of the same candidate (see the module's note)."""
    if rounds < 1 or warmup < 0 or lead_in < 0:
        raise ValueError(
            f"expected rounds >= 1, warmup >= 0 and lead_in >= 0, "
            f"got rounds={rounds}, warmup={warmup}, lead_in={lead_in}"
        )
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    _synchronize()
    times: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(0)
    for _ in range(rounds):
        for name in order.sample(names, len(names)):
            for _ in range(lead_in):
                candidates[name]()
            _synchronize()
            start = time.perf_counter()
            candidates[name]()
            _synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: Samples(tuple(t)) for name, t in times.items()}
