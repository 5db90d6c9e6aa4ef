"""Recognise what can be fused, by dataflow rather than by class name.

A module's forward is traced with torch.fx, keeping every submodule except containers as a
leaf, so the graph shows exactly which module feeds which. Two patterns are read from it:

* a residual block: ``relu(main(x) + shortcut(x))`` where ``main`` and ``shortcut`` are
  chains of single-input modules (the shortcut may be empty). torchvision's BasicBlock and
  Bottleneck, with or without downsample, grouped, wide or dilated, match; so does any
  block written the same way, whatever its class is called.
* conv -> BN -> ReLU runs inside any traceable forward (the stem, or the layers of a
  block that is not residual), where the intermediate values have no other use.

Anything that does not match stays as it is; the reason is returned for explain().
"""

from __future__ import annotations

import operator
import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from .fold_bn import NotFoldable, batchnorm_statistics, is_batchnorm

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class Mismatch(Exception):
    """A module does not match a pattern; the message says why."""


def conv_unsupported_reason(module: nn.Module) -> str | None:
    """Why this Conv2d cannot become a fused conv, or None if it can."""
    if not isinstance(module, nn.Conv2d):
        return f"{type(module).__name__} is not a Conv2d"
    if type(module).forward is not nn.Conv2d.forward:
        return f"{type(module).__name__} overrides Conv2d.forward"
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r} (only 'zeros' is fused)"
    if isinstance(module.padding, str):
        return f"padding={module.padding!r} (only explicit integer padding is fused)"
    return None


def is_relu_module(module: nn.Module) -> bool:
    return isinstance(module, nn.ReLU) and type(module).forward is nn.ReLU.forward


@dataclass
class Step:
    """One single-input operation on a chain: a module call or a functional ReLU."""

    kind: str  # "conv", "bn", "relu" or "other"
    name: str | None  # the module's name inside the traced module; None for a functional relu
    module: nn.Module | None


@dataclass
class ConvUnit:
    """conv, then optionally a foldable BN, then optionally a ReLU: one fused conv."""

    conv: Step
    bn: Step | None = None
    relu: Step | None = None

    @property
    def pattern(self) -> str:
        return "+".join(["conv"] + (["bn"] if self.bn else []) + (["relu"] if self.relu else []))

    def names(self) -> list[str]:
        steps = [self.conv, self.bn, self.relu]
        return [s.name if s.name is not None else "F.relu" for s in steps if s is not None]


@dataclass
class ResidualBlock:
    """relu(main(x) + shortcut(x)), each branch a list of ConvUnits and leftover Steps."""

    main: list = field(default_factory=list)
    shortcut: list = field(default_factory=list)
    final_relu: Step | None = None


class _LeafTracer(fx.Tracer):
    # Every submodule but a container is a leaf, so the graph is the dataflow between them.
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not isinstance(m, CONTAINERS)


def trace(module: nn.Module) -> fx.Graph:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _LeafTracer().trace(module)
    except Exception as error:  # fx raises many kinds; each means "not traceable"
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise Mismatch(f"its forward cannot be traced by torch.fx ({type(error).__name__}: {message})") from None


def _is_functional_relu(node: fx.Node) -> bool:
    if node.op == "call_function" and node.target in (F.relu, torch.relu, torch.relu_):
        return len(node.args) == 1 and set(node.kwargs) <= {"inplace"}
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return len(node.args) == 1 and not node.kwargs
    return False


def _is_add(node: fx.Node) -> bool:
    if node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add):
        return len(node.args) == 2 and not node.kwargs
    if node.op == "call_method" and node.target in ("add", "add_"):
        return len(node.args) == 2 and not node.kwargs
    return False


def _step(node: fx.Node, root: nn.Module) -> Step | None:
    """The Step this node is, or None if it is not a single-input module call or relu."""
    if _is_functional_relu(node):
        return Step("relu", None, None)
    if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return None
    module = root.get_submodule(node.target)
    if conv_unsupported_reason(module) is None:
        kind = "conv"
    elif is_batchnorm(module):
        kind = "bn"
    elif is_relu_module(module):
        kind = "relu"
    else:
        kind = "other"
    return Step(kind, node.target, module)


def _describe(node: fx.Node) -> str:
    return f"{node.op} {getattr(node.target, '__name__', node.target)}"


def _chain_back(node: fx.Node, start: fx.Node, root: nn.Module, seen: set) -> list[Step]:
    """The Steps from ``start`` to ``node``, each value used only by the next Step."""
    steps = []
    while node is not start:
        step = _step(node, root) if isinstance(node, fx.Node) else None
        if step is None:
            raise Mismatch(f"a branch contains {_describe(node) if isinstance(node, fx.Node) else repr(node)}, "
                           "not a chain of single-input modules")
        steps.append(step)
        seen.add(node)
        node = node.args[0]
        if node is not start and len(node.users) != 1:
            raise Mismatch(f"the value of {_describe(node)} is used outside its branch")
    return steps[::-1]


def _foldable(bn: nn.Module, conv: nn.Conv2d) -> bool:
    try:
        mean = batchnorm_statistics(bn)[0]
    except NotFoldable:
        return False
    return mean.shape == (conv.out_channels,)


def group_chain(steps: list[Step]) -> list:
    """Group a chain into ConvUnits (conv[, bn][, relu]) and the Steps left between them."""
    grouped, i = [], 0
    while i < len(steps):
        step = steps[i]
        i += 1
        if step.kind != "conv":
            grouped.append(step)
            continue
        unit = ConvUnit(step)
        if i < len(steps) and steps[i].kind == "bn" and _foldable(steps[i].module, step.module):
            unit.bn = steps[i]
            i += 1
        if i < len(steps) and steps[i].kind == "relu":
            unit.relu = steps[i]
            i += 1
        grouped.append(unit)
    return grouped


def has_residual_add(graph: fx.Graph) -> bool:
    return any(_is_add(node) for node in graph.nodes)


def match_residual_block(module: nn.Module, graph: fx.Graph) -> ResidualBlock:
    """Read ``relu(main(x) + shortcut(x))`` from the traced graph, or raise Mismatch."""
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise Mismatch(f"its forward takes {len(inputs)} inputs; a residual block takes one")
    (x,) = inputs
    output = next(n for n in graph.nodes if n.op == "output")
    relu = output.args[0]
    if not isinstance(relu, fx.Node):
        raise Mismatch("it does not return a single tensor")
    final = _step(relu, module)
    if final is None or final.kind != "relu":
        raise Mismatch(f"it ends in {_describe(relu)}, not in a ReLU after the residual add")
    add = relu.args[0]
    if not isinstance(add, fx.Node) or not _is_add(add) or len(add.users) != 1:
        follows = _describe(add) if isinstance(add, fx.Node) else repr(add)
        raise Mismatch(f"its final ReLU follows {follows}, not a residual add of two tensors used once")
    seen = {x, output, relu, add}
    left, right = (_chain_back(arg, x, module, seen) for arg in add.args)
    extra = [n for n in graph.nodes if n not in seen and n.op != "get_attr"]
    if extra:
        raise Mismatch(f"it does more than relu(main(x) + shortcut(x)): {', '.join(_describe(n) for n in extra)}")
    main, shortcut = (left, right) if len(left) >= len(right) else (right, left)
    if not any(step.kind == "conv" for step in main):
        raise Mismatch("its main branch has no fusable Conv2d")
    return ResidualBlock(group_chain(main), group_chain(shortcut), final)


@dataclass
class ChainMatch:
    """A ConvUnit found in a traced forward; ``before_maxpool`` marks a ResNet stem."""

    unit: ConvUnit
    before_maxpool: bool


def find_conv_units(module: nn.Module, graph: fx.Graph) -> tuple[list[ChainMatch], dict[str, str]]:
    """Every fusable conv[-bn][-relu] run in the graph, and why other convs were left alone.

    A BN or ReLU module is folded into the conv only if it is called exactly once and takes
    the previous value as its only user, because fusing replaces it by an Identity.
    """
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    matches, reasons = [], {}

    def sole_user(node: fx.Node) -> fx.Node | None:
        return next(iter(node.users)) if len(node.users) == 1 else None

    def module_step(node: fx.Node | None, kind: str) -> Step | None:
        if node is None or node.op != "call_module" or calls[node.target] != 1:
            return None
        step = _step(node, module)
        return step if step is not None and step.kind == kind else None

    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(module.get_submodule(node.target), nn.Conv2d):
            continue
        conv = module.get_submodule(node.target)
        reason = conv_unsupported_reason(conv)
        if reason is None and calls[node.target] != 1:
            reason = f"it is called {calls[node.target]} times in one forward"
        if reason is None and (len(node.args) != 1 or node.kwargs):
            reason = "it is called with more than one argument"
        if reason is not None:
            reasons[node.target] = reason
            continue
        unit, last = ConvUnit(Step("conv", node.target, conv)), node
        bn = module_step(sole_user(node), "bn")
        if bn is not None and _foldable(bn.module, conv):
            unit.bn, last = bn, sole_user(node)
        relu = module_step(sole_user(last), "relu")
        if relu is not None:
            unit.relu, last = relu, sole_user(last)
        after = sole_user(last)
        before_maxpool = (
            after is not None
            and after.op == "call_module"
            and isinstance(module.get_submodule(after.target), nn.MaxPool2d)
        )
        matches.append(ChainMatch(unit, before_maxpool))
    return matches, reasons
