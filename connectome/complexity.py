"""Complexity from the spec alone: params, FLOPs (multiply-adds), stored activations.

Nothing is built, so a study can reject or budget-match thousands of candidates cheaply.
The params equal the built module's count exactly (a test checks every pattern).
"""
from __future__ import annotations

from connectome.architecture import ArchConfig
from connectome.errors import ConfigError
from connectome.ops import HEADS, OPS, STEMS, TRANSITIONS, Cx
from connectome.spec import BlockSpec, NetworkSpec

DEFAULT_INPUT = {"cifar": 32, "imagenet": 224, "postact": 32, "preact-entry": 32}


def block_complexity(block: BlockSpec, hw: int, bn_size: int, memory_efficient: bool = False) -> Cx:
    """Sum over a block's layer nodes (concatenations count as stored activations)."""
    total = Cx()
    for node in block.nodes:
        if node.op not in OPS:
            continue
        cin = block.input_width(node.id)
        total += OPS[node.op].complexity(cin, node.width, bn_size, hw, memory_efficient)
        if len(block.inputs[node.id]) > 1 and not memory_efficient:
            total += Cx(acts=cin * hw * hw)
    return total


def complexity(
    spec: NetworkSpec, input_size: tuple[int, int, int] | None = None, memory_efficient: bool = False
) -> Cx:
    """Params, FLOPs (multiply-adds) and activation elements per sample for a (C, H, W) input."""
    hw = DEFAULT_INPUT[spec.stem] if input_size is None else input_size[-1]
    total, hw = STEMS[spec.stem].complexity(spec.in_channels, spec.stem_channels, hw)
    for i, block in enumerate(spec.blocks):
        total += block_complexity(block, hw, spec.bn_size, memory_efficient)
        if i < len(spec.transitions):
            cx, hw = TRANSITIONS[spec.transition].complexity(block.out_channels, spec.transitions[i], hw)
            total += cx
    return total + HEADS[spec.head].complexity(spec.blocks[-1].out_channels, spec.classes, hw)


def match_budget(
    arch: ArchConfig,
    target_params: int,
    input_size: tuple[int, int, int] | None = None,
    max_growth: int = 1024,
) -> ArchConfig:
    """The arch with the growth rate (layer width) whose params land closest to the target."""
    from connectome.builder import build_spec  # builder imports this module

    def params(k: int) -> int:
        return complexity(build_spec(arch.model_copy(update={"growth": k})), input_size).params

    lo, hi = 1, max_growth
    if params(hi) < target_params:
        raise ConfigError(f"{arch.pattern}: even growth {max_growth} stays under {target_params:,} params")
    while lo < hi:  # smallest k with params(k) >= target; params grow with k
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if params(mid) < target_params else (lo, mid)
    best = min({max(lo - 1, 1), lo}, key=lambda k: abs(params(k) - target_params))
    return arch.model_copy(update={"growth": best})
