"""Fused ops: schemas and fake implementations (schemas, meta), argument checks (checks),
and the pure-PyTorch reference implementation (reference)."""

from .schemas import FusedOps, backend_ops, define_backend_ops, qualname

__all__ = ["FusedOps", "backend_ops", "define_backend_ops", "qualname"]
