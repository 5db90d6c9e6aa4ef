"""Fused ops: schemas and fake implementations (schemas, meta), argument checks (checks),
and the pure-PyTorch reference implementation (reference)."""

from .schemas import SCHEMAS, FusedOps, backend_ops, define_backend_ops, kernel_missing, qualname

__all__ = ["SCHEMAS", "FusedOps", "backend_ops", "define_backend_ops", "kernel_missing", "qualname"]
