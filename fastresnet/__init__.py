"""fastresnet: faster ResNet inference in PyTorch, as a drop-in.

    fast = fastresnet.optimize(model.eval())   # fold BN, swap fused kernels, pick a backend
    print(fastresnet.explain(fast))            # what was fused, on which backend, and why not
    q = fastresnet.quantize(model.eval(), calibration_batches)   # int8, post-training
"""

from .api import optimize
from .backends import available_backends
from .explain import explain
from .quantization import quantize

__version__ = "0.1.0"

__all__ = ["__version__", "available_backends", "explain", "optimize", "quantize"]
