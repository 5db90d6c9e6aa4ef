"""Benchmarking: the interleaved timing runner shared by benchmarks/ and (later) the CLI."""

from .runner import Samples, measure_interleaved

__all__ = ["Samples", "measure_interleaved"]
