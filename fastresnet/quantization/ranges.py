"""Activation ranges from calibration data, and the uint8 quantization they give.

Two estimators, chosen by name:

- ``"minmax"`` (the default): the observed minimum and maximum;
- ``"mse"``: from a histogram of the values (2048 bins over the observed range), the range,
  shrunk from the observed one, that minimizes the expected squared quantization error:
  clipping error for the values outside it, rounding error (scale^2 / 12) for the nonzero
  ones inside, as torch.ao's HistogramObserver and NNCF do in their own ways, so that one
  outlier no longer stretches the scale of every other value. Measured on the digits
  ResNet-18 (BENCHMARKS.md) it kept the same top-1 but doubled the logits' error against
  float32 (1.3e-2 against 6.7e-3 of the output scale): clipping the large activations costs
  more downstream than their share of the squared error says. Hence not the default.

Every range is widened to hold 0, so that zero (the padding, and everything a ReLU clipped)
is exact: a tensor after a ReLU gets zero point 0, a signed one (the network input, a
shortcut conv's output) an asymmetric zero point.
"""

from __future__ import annotations

import torch

from ..nn.int8 import QParams

ESTIMATORS = ("minmax", "mse")
BINS = 2048


def check_estimator(name: str) -> str:
    if name not in ESTIMATORS:
        raise ValueError(f"unknown range_estimator {name!r}; valid choices are {', '.join(map(repr, ESTIMATORS))}")
    return name


class RangeObserver:
    """The values of one tensor over the calibration batches: min and max in a first pass,
    then (for "mse") a histogram over that range in a second."""

    def __init__(self) -> None:
        self.low, self.high = float("inf"), float("-inf")
        self.histogram: torch.Tensor | None = None
        self.zeros = 0  # exact zeros (what a ReLU clipped): exact in every range, no rounding error

    def observe_range(self, x: torch.Tensor) -> None:
        self.low = min(self.low, x.min().item())
        self.high = max(self.high, x.max().item())

    def observe_histogram(self, x: torch.Tensor) -> None:
        counts = torch.histc(x.double().flatten(), BINS, self.low, self.high) if self.high > self.low else None
        if counts is not None:
            self.histogram = counts if self.histogram is None else self.histogram + counts
            self.zeros += int((x == 0).sum())

    def qparams(self, estimator: str) -> QParams:
        low, high = self.low, self.high
        if estimator == "mse" and self.histogram is not None:
            low, high = _mse_range(self.histogram, self.zeros, low, high)
        return qparams_for_range(low, high)


def qparams_for_range(low: float, high: float) -> QParams:
    """uint8 (scale, zero point) covering [low, high] widened to hold 0."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:  # all zeros: any scale represents them
        return QParams(1.0, 0)
    scale = (high - low) / 255
    return QParams(scale, int(min(max(round(-low / scale), 0), 255)))


def _mse_range(histogram: torch.Tensor, zeros: int, low: float, high: float) -> tuple[float, float]:
    """The range [f low, f high], f in [0.2, 1], of least expected squared error over the
    histogram, whose ``zeros`` exact zeros cost nothing."""
    edges = torch.linspace(low, high, BINS + 1, dtype=torch.float64)
    centers, counts = (edges[:-1] + edges[1:]) / 2, histogram.double()
    best, best_error = (low, high), float("inf")
    for step in range(100, 19, -1):
        f = step / 100
        lo, hi = min(low * f, 0.0), max(high * f, 0.0)
        scale = (hi - lo) / 255
        clipped = centers.clamp(lo, hi)
        inside = counts[(centers >= lo) & (centers <= hi)].sum().item() - zeros
        error = (counts * (centers - clipped) ** 2).sum().item() + inside * scale**2 / 12
        if error < best_error:
            best, best_error = (lo, hi), error
    return best
