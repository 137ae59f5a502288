"""Complexity from the spec alone: params, FLOPs (multiply-adds), stored activations.

Nothing is built (and torch is not imported), so a study can reject or budget-match thousands of
candidates cheaply. Each kind's cost formula lives in `connectome.costs`; the params equal the
built module's count exactly (tests check every pattern and every kind).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from connectome.aggregations import AGGREGATIONS
from connectome.architecture import ArchConfig
from connectome.costs import HEAD_KINDS, OP_KINDS, STEM_KINDS, TRANSITION_KINDS, Cx
from connectome.errors import ConfigError, SpecError
from connectome.spec import BlockSpec, NetworkSpec, Node

# The input side each stem was designed for (a test checks that every stem kind has one).
# The token stem's "side" is 1: a decoder's counts are per token.
DEFAULT_INPUT = {"cifar": 32, "imagenet": 224, "postact": 32, "preact-entry": 32, "wide-entry": 32, "none": 32,
                 "highway": 32, "tokens": 1, "patch4": 224, "patch2": 32, "efficientnet": 224, "efficientnet-s1": 32}


def block_complexity(block: BlockSpec, hw: int, bn_size: int, memory_efficient: bool = False,
                     op_options: tuple[tuple[str, Any], ...] = ()) -> Cx:
    """Sum over a block's nodes: ops, aggregation kinds' own costs, stored aggregates (not the output's).

    `op_options`: the family's keyword options of every op formula (NetworkSpec.op_options).
    """
    total = Cx()
    for node in block.nodes[1:]:
        cin = block.input_width(node.id)
        own = dict(OP_KINDS.ports[node.op].own) if node.ports else {}
        for port, edges in block.port_inputs(node.id).items():
            total += _aggregation_cx(block, node, port, edges, hw, memory_efficient, own=port in own)
        if node.op in OP_KINDS.costs:
            ported = {"ports": tuple(p for p, _, _ in node.ports)} if node.ports else {}
            total += OP_KINDS.costs[node.op](cin, node.width, bn_size, hw, memory_efficient, **dict(op_options),
                                             **ported)
    return total


def _aggregation_cx(block: BlockSpec, node: Node, port: str, edges: tuple, hw: int, memory_efficient: bool,
                    own: bool = False) -> Cx:
    """One input port's kind: its learned parameters and work, plus its aggregate when stored.

    `own`: the op's own output joins the port's inputs first (an attention node's `values`).
    """
    n = len(edges) + own
    agg, options = node.port_kind(port)
    kind = AGGREGATIONS[agg]
    width = block.read_width(edges[0])
    cx = kind.cost(n, width, hw, options)
    cin = kind.input_width([block.read_width(e) for e in edges], options)
    if n == 1 and kind.single_is_identity:
        return Cx()
    recomputed = memory_efficient and node.op in OP_KINDS.costs  # checkpointed with the op's head
    if node.id == block.output or recomputed:
        return cx
    return cx + Cx(acts=cin * hw * hw)


def complexity(
    spec: NetworkSpec, input_size: tuple[int, int, int] | None = None, memory_efficient: bool = False
) -> Cx:
    """Params, FLOPs (multiply-adds) and activation elements per sample for a (C, H, W) input."""
    total, hw = _stem(spec, input_size)
    for block, hw, transition in _blocks(spec, hw):
        total += block_complexity(block, hw, spec.bn_size, memory_efficient, spec.op_options) + transition
    return total + HEAD_KINDS.formula(spec.head)(spec.blocks[-1].out_channels, spec.classes, hw)


def block_sides(spec: NetworkSpec, input_size: tuple[int, int, int] | None = None) -> list[int]:
    """The side of the feature maps each block runs at, for a (C, H, W) input."""
    return [hw for _, hw, _ in _blocks(spec, _stem(spec, input_size)[1])]


def _stem(spec: NetworkSpec, input_size: tuple[int, int, int] | None) -> tuple[Cx, int]:
    """The stem's complexity and the side of the maps it hands to the first block."""
    cost = STEM_KINDS.formula(spec.stem)
    hw = DEFAULT_INPUT[spec.stem] if input_size is None else input_size[-1]
    if hw < 1:
        raise SpecError(f"input size {hw}x{hw} is impossible: the side must be at least 1 pixel")
    return cost(spec.in_channels, spec.stem_channels, hw)


def _blocks(spec: NetworkSpec, hw: int) -> Iterator[tuple[BlockSpec, int, Cx]]:
    """Each block, the side it runs at, and the complexity of the transition after it (none after the last)."""
    for i, block in enumerate(spec.blocks):
        if hw < 1:
            raise SpecError(f"the input is too small for this network: block {i + 1} would run on {hw}x{hw} maps "
                            f"after {i} downsampling transitions (use a larger input size or fewer blocks)")
        transition, out_hw = Cx(), hw
        if i < len(spec.transitions):
            cost = TRANSITION_KINDS.formula(spec.transition_kind(i))
            transition, out_hw = cost(block.out_channels, spec.transitions[i], hw)
        yield block, hw, transition
        hw = out_hw


def match_budget(
    arch: ArchConfig,
    target_params: int,
    input_size: tuple[int, int, int] | None = None,
    max_growth: int = 1024,
) -> ArchConfig:
    """The arch with the growth rate (layer width) whose params land closest to the target.

    Params grow with the growth rate, so this is a search for the smallest k with
    params(k) >= target (then k or k - 1, whichever is closer; k - 1 on a tie). It brackets k
    by doubling or halving from the arch's own growth, since a study's base is usually near its
    budget, and builds each candidate spec once. k counts the family's width steps (a decoder's
    width is a multiple of twice its heads; other families take any width).
    """
    from connectome.builder import build_spec, growth_step  # builder imports this module

    step = growth_step(arch)
    seen: dict[int, int] = {}

    def params(k: int) -> int:
        if k not in seen:
            seen[k] = complexity(build_spec(arch.model_copy(update={"growth": k * step})), input_size).params
        return seen[k]

    top = max(max_growth // step, 1)
    lo, hi = _bracket(params, target_params, min(max(arch.growth // step, 1), top), top)
    if params(hi) < target_params:
        raise ConfigError(f"{arch.pattern}: even growth {top * step} stays under {target_params:,} params")
    while lo < hi:  # invariant: params(lo - 1) < target <= params(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if params(mid) < target_params else (lo, mid)
    best = min({max(lo - 1, 1), lo}, key=lambda k: abs(params(k) - target_params))
    return arch.model_copy(update={"growth": best * step})


def _bracket(params: Callable[[int], int], target: int, start: int, max_growth: int) -> tuple[int, int]:
    """(lo, hi) with params(lo - 1) < target <= params(hi) (lo = 1: nothing below), from `start`.

    params(hi) < target only when even max_growth is too small.
    """
    if params(start) >= target:
        hi = start
        while hi > 1 and params(hi // 2) >= target:
            hi //= 2
        return hi // 2 + 1, hi
    lo = start
    while 2 * lo < max_growth and params(2 * lo) < target:
        lo *= 2
    return lo + 1, min(2 * lo, max_growth)
