"""Post-training int8 quantization of the fused model: ranges (the estimators), calibrate
(running the user's batches), quantize (the API and the conversion to int8 modules)."""

from .quantize import quantize
from .ranges import ESTIMATORS

__all__ = ["ESTIMATORS", "quantize"]
