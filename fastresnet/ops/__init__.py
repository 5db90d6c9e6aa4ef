"""Fused ops: schemas and fake implementations (schemas, meta), argument checks (checks),
the pure-PyTorch reference implementation (reference), and the int8 ops' reference
(int8_reference)."""

from .schemas import INT8_SCHEMAS, SCHEMAS, FusedOps, Int8Ops, backend_ops, define_backend_ops, kernel_missing, qualname

__all__ = [
    "INT8_SCHEMAS", "SCHEMAS", "FusedOps", "Int8Ops", "backend_ops", "define_backend_ops", "kernel_missing", "qualname",
]  # fmt: skip
