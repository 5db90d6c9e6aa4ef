"""Walk a model and swap recognised patterns for fused modules, recording every decision.

The walk visits modules top-down by fully qualified name. At each module with children:

1. if its forward is a residual block, the whole block is replaced by a FusedResidualBlock;
2. otherwise its traced forward is searched for conv[-bn][-relu] runs, each replaced by a
   FusedConv2d (the BN and ReLU by Identity), and the walk goes on into its children.

Containers (Sequential, ModuleList, ModuleDict) are seen through by their parent's trace and
only traced themselves when the parent could not be. Leaf pools are swapped by type, since
their semantics are fixed by their parameters. Nothing is rebound on instances: modules
are replaced in their parents.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.nn.modules.utils import _pair
from torchvision.ops.misc import FrozenBatchNorm2d

from ..explain import EagerRow, FusedRow
from ..nn import FUSED_MODULES, FusedAddReLU, FusedConv2d, FusedGlobalAvgPool2d, FusedMaxPool2d, FusedResidualBlock
from . import patterns
from .fold_bn import NotFoldable, batchnorm_statistics, fold_conv_bn, is_batchnorm
from .patterns import ConvUnit, Mismatch

# Leaf modules worth a line in explain() when they stay eager: they do the model's arithmetic.
_REPORTED_EAGER = (nn.Conv2d, nn.BatchNorm2d, FrozenBatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Linear)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _op_name(op) -> str:
    return str(getattr(op, "__name__", op)).removesuffix(".default")


class Rewriter:
    def __init__(
        self, root: nn.Module, backend, dtype: torch.dtype, device: torch.device, conv_algorithm: str = "auto"
    ):
        self.root = root
        self.conv_algorithm = conv_algorithm
        self.algorithm_reasons: dict[int, str] = {}  # id(FusedConv2d) -> why its algorithm
        self.device = device
        self.backend = backend  # a backends.Backend
        self.ops = backend.ops()
        self.dtype = dtype
        self.fused: list[FusedRow] = []
        # Keyed by id() because modules moved into a fused block change their names.
        self.reasons: dict[int, str] = {}
        self.origins = {id(m): n for n, m in root.named_modules()}
        counts = Counter(id(m) for _, m in root.named_modules(remove_duplicate=False))
        self.shared = {i for i, n in counts.items() if n > 1}
        self.entry: tuple[FusedConv2d, str] | None = None
        self.unfused_adds: list[EagerRow] = []  # modules whose residual add stays eager

    def run(self) -> tuple[nn.Module, list[FusedRow], list[EagerRow]]:
        """Rewrite the model; return it (the root itself may be replaced) and the report."""
        root = self._visit(self.root, "", covered=False) or self.root
        if self.entry is not None:
            fused, name = self.entry
            fused.entry_name = name
            fused.entry_channels_last = self.backend.keeps_channels_last(self.device)
        return root, self.fused, self._eager_rows(root)

    # -- the walk --------------------------------------------------------------------------

    def _visit(self, module: nn.Module, name: str, covered: bool) -> nn.Module | None:
        """Rewrite ``module`` in place; return a replacement for it, or None to keep it."""
        if isinstance(module, FUSED_MODULES):
            return None
        if next(module.children(), None) is None:
            return self._swap_pool(module, name)
        graph = None
        if not (covered and isinstance(module, patterns.CONTAINERS)):
            try:
                graph = patterns.trace(module)
            except Mismatch as error:
                self._note_untraceable(module, name, str(error))
        if graph is not None:
            if patterns.has_residual_add(graph):
                try:
                    return self._build_block(patterns.match_residual_block(module, graph), name)
                except Mismatch as error:
                    reason = f"has a residual add that was not fused: {error}"
                    self.unfused_adds.append(EagerRow(name or "(model)", type(module).__name__, reason))
            self._fuse_chains(module, name, graph)
        for child_name, child in list(module.named_children()):
            child_covered = isinstance(child, patterns.CONTAINERS) and (graph is not None or covered)
            replacement = self._visit(child, _join(name, child_name), child_covered)
            if replacement is not None:
                setattr(module, child_name, replacement)
        return None

    def _note_untraceable(self, module: nn.Module, name: str, reason: str) -> None:
        for child in module.children():
            self.reasons.setdefault(id(child), f"{name or 'the model'}: {reason}")

    # -- swaps -----------------------------------------------------------------------------

    def _swap_pool(self, module: nn.Module, name: str) -> nn.Module | None:
        common = {"backend": self.backend.name}
        if type(module) is nn.MaxPool2d and not module.return_indices:
            fused = FusedMaxPool2d(
                _pair(module.kernel_size),
                _pair(module.stride if module.stride is not None else module.kernel_size),
                _pair(module.padding),
                _pair(module.dilation),
                module.ceil_mode,
                op=self.ops.max_pool2d,
                **common,
            )
            self._record(name, [name], "maxpool", self.ops.max_pool2d)
            return fused
        if type(module) is nn.AdaptiveAvgPool2d and _pair(module.output_size) == (1, 1):
            self._record(name, [name], "global avgpool", self.ops.global_avg_pool)
            return FusedGlobalAvgPool2d(op=self.ops.global_avg_pool, **common)
        return None

    def _fuse_chains(self, module: nn.Module, name: str, graph) -> None:
        matches, reasons = patterns.find_conv_units(module, graph)
        for target, reason in reasons.items():
            self.reasons[id(module.get_submodule(target))] = reason
        for match in matches:
            unit = match.unit
            steps = [s for s in (unit.conv, unit.bn, unit.relu) if s is not None]
            shared = [s.name for s in steps if id(s.module) in self.shared]
            if shared:
                self.reasons[id(unit.conv.module)] = (
                    f"{', '.join(shared)} is registered in more than one place, so it cannot be replaced"
                )
                continue
            fused = self._fused_conv(unit, _join(name, unit.conv.name))
            module.set_submodule(unit.conv.name, fused)
            for step in steps[1:]:
                module.set_submodule(step.name, nn.Identity())
            pattern = unit.pattern + (" (stem)" if match.before_maxpool else "")
            self._record(_join(name, unit.conv.name), self._names(unit, name), pattern, fused)

    def _build_block(self, block: patterns.ResidualBlock, name: str) -> FusedResidualBlock:
        *body_parts, last_part = block.main
        body = [self._build_part(p, name, _join(name, f"body.{i}")) for i, p in enumerate(body_parts)]
        shortcut = [self._build_part(p, name, _join(name, f"shortcut.{i}")) for i, p in enumerate(block.shortcut)]
        add_relu = ["add", _join(name, block.final_relu.name or "F.relu")]
        merge = None
        if isinstance(last_part, ConvUnit) and last_part.relu is None:
            # The block's residual add and ReLU go in the epilogue of its last conv.
            last = self._fused_conv(last_part, _join(name, last_part.conv.name), relu=True)
            self._record(
                _join(name, "last"), self._names(last_part, name) + add_relu, f"{last_part.pattern}+add+relu", last
            )
        else:
            last = self._build_part(last_part, name, _join(name, "last"))
            merge = FusedAddReLU(op=self.ops.add_relu, backend=self.backend.name)
            self._record(_join(name, "merge"), add_relu, "add+relu", merge.op)
        return FusedResidualBlock(nn.Sequential(*body), last, nn.Sequential(*shortcut), merge)

    def _build_part(self, part, prefix: str, new_name: str) -> nn.Module:
        """A fused conv for a ConvUnit; the module itself (or a ReLU) for a leftover Step."""
        if isinstance(part, ConvUnit):
            fused = self._fused_conv(part, _join(prefix, part.conv.name))
            self._record(new_name, self._names(part, prefix), part.pattern, fused)
            return fused
        if part.module is None:  # a functional relu
            return nn.ReLU()
        self.reasons.setdefault(id(part.module), "in a fused block, but not directly after a fusable conv")
        # Kept as it is, but what it contains (an SE module's convs, say) is rewritten too.
        return self._visit(part.module, new_name, covered=False) or part.module

    def _fused_conv(self, unit: ConvUnit, original_name: str, relu: bool | None = None) -> FusedConv2d:
        conv = unit.conv.module
        weight, bias = fold_conv_bn(conv, unit.bn.module if unit.bn else None, self.dtype)
        packed, layout, why = self.backend.prepare_weight(
            weight, conv.groups, conv.stride, conv.dilation, self.conv_algorithm
        )
        fused = FusedConv2d(
            packed,
            bias,
            in_channels=conv.in_channels,
            kernel_size=conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            relu=unit.relu is not None if relu is None else relu,
            op=self.ops.conv2d_bias_act,
            backend=self.backend.name,
            weight_layout=layout,
        )
        self.algorithm_reasons[id(fused)] = why
        if self.entry is None:  # the walk reaches the stem first
            self.entry = (fused, original_name)
        return fused

    # -- the report ------------------------------------------------------------------------

    @staticmethod
    def _names(unit: ConvUnit, prefix: str) -> list[str]:
        return [_join(prefix, n) if n != "F.relu" else f"F.relu in {prefix or 'model'}" for n in unit.names()]

    def _record(self, module: str, replaces: list[str], pattern: str, op) -> None:
        """``op``: an OpOverload, or a FusedConv2d (whose CPU tier and algorithm are shown)."""
        why = ""
        if isinstance(op, FusedConv2d):
            name = _op_name(op.op) + (f" ({op.cpu_tier}, {op.algorithm})" if op.cpu_tier else "")
            why = self.algorithm_reasons.get(id(op), "")
        else:
            name = _op_name(op)
        self.fused.append(FusedRow(module or "(model)", replaces, pattern, name, why))

    def _eager_rows(self, root: nn.Module) -> list[EagerRow]:
        rows = list(self.unfused_adds)
        for name, module in root.named_modules():
            if not isinstance(module, _REPORTED_EAGER) or isinstance(module, FUSED_MODULES):
                continue
            origin = self.origins.get(id(module))
            shown = name if origin in (None, name) else f"{name} (was {origin})"
            rows.append(EagerRow(shown or "(model)", type(module).__name__, self._eager_reason(module)))
        return rows

    def _eager_reason(self, module: nn.Module) -> str:
        if id(module) in self.reasons:
            return self.reasons[id(module)]
        if isinstance(module, nn.Linear):
            return "no fused kernel for Linear (runs as torch.nn.Linear)"
        if is_batchnorm(module):
            try:
                batchnorm_statistics(module)
            except NotFoldable as error:
                return f"cannot be folded: {error}"
            return "not directly after a fusable conv"
        if isinstance(module, nn.Conv2d):
            return patterns.conv_unsupported_reason(module) or "not called from a traceable forward"
        return "not part of a recognised pattern"
