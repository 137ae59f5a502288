"""From architecture options to a spec, and from a spec to a model.

`build_spec` is pure (options -> immutable NetworkSpec); `build_model` adds the executor.
"""
from __future__ import annotations

import math
from typing import Any

from connectome.architecture import ArchConfig, layers_per_block, make_arch
from connectome.errors import ConfigError
from connectome.executor import ConnectomeNet
from connectome.ops import OPS
from connectome.patterns import BlockContext, Pattern, block_graph, get_pattern
from connectome.spec import BlockSpec, NetworkSpec


def build_spec(arch: ArchConfig) -> NetworkSpec:
    """The network spec of an architecture: stem width, block DAGs, transition widths."""
    pattern = get_pattern(arch.pattern)
    layers = _block_sizes(arch, pattern)
    windows = _partial_windows(arch, len(layers))
    op = "bottleneck" if arch.bottleneck else "conv3x3"
    stem = width = stem_channels(arch, pattern)
    blocks, transitions = [], []
    for i, n in enumerate(layers):
        ctx = BlockContext(n_layers=n, in_channels=width, growth=arch.growth, op=op, index=i)
        options = dict(arch.pattern_options, **({"m": windows[i]} if windows else {}))
        block = BlockSpec.from_graph(block_graph(arch.pattern, ctx, **options), frozenset(OPS))
        blocks.append(block)
        if i < len(layers) - 1:
            width = arch.growth if pattern.fixed_width else math.floor(arch.compression * block.out_channels)
            transitions.append(width)
    return NetworkSpec(
        stem=arch.stem,
        in_channels=arch.in_channels,
        stem_channels=stem,
        blocks=tuple(blocks),
        transitions=tuple(transitions),
        classes=arch.classes,
        growth=arch.growth,
        bn_size=arch.bn_size,
        dropout=arch.dropout or 0.0,
        meta={"pattern": arch.pattern, "preset": arch.preset},
    )


def build_model(arch: ArchConfig | None = None, **options: Any) -> ConnectomeNet:
    """A model from an ArchConfig or from keyword options (`build_model(preset="densenet121")`)."""
    if arch is None:
        arch = make_arch(**options)
    elif options:
        arch = make_arch(**{**arch.model_dump(), **options})
    return ConnectomeNet(build_spec(arch), memory_efficient=arch.memory_efficient)


def resolved_m(arch: ArchConfig, spec: NetworkSpec) -> list[int] | None:
    """The partial pattern's window per block as built (None = block input width, resolved); None otherwise."""
    windows = _partial_windows(arch, len(spec.blocks))
    if windows is None:
        return None
    return [block.in_channels if m is None else m for m, block in zip(windows, spec.blocks)]


def stem_channels(arch: ArchConfig, pattern: Pattern) -> int:
    """Stem width: explicit, growth for sum patterns, 2k with bottlenecks, else 16."""
    if pattern.fixed_width:
        if arch.stem_channels not in (None, arch.growth):
            raise ConfigError(
                f"pattern {pattern.name!r} sums layer outputs, so its stem must have growth={arch.growth} "
                f"channels, not stem_channels={arch.stem_channels}"
            )
        return arch.growth
    if arch.stem_channels is not None:
        return arch.stem_channels
    return 2 * arch.growth if arch.bottleneck or arch.stem == "imagenet" else 16


def _block_sizes(arch: ArchConfig, pattern: Pattern) -> list[int]:
    """Layers per block; patterns with their own depth (files) get a placeholder count."""
    if pattern.own_depth:
        paths = arch.pattern_options.get("path")
        return [0] * (len(paths) if isinstance(paths, list) else arch.blocks)
    return layers_per_block(arch)


def _partial_windows(arch: ArchConfig, n_blocks: int) -> list[int | None] | None:
    """Per-block m for the partial pattern (None = the block's input width)."""
    if arch.m is None:
        return [None] * n_blocks if arch.pattern == "partial" else None
    if arch.pattern != "partial":
        raise ConfigError(f"m (window size) applies to pattern 'partial' only, not {arch.pattern!r}")
    windows = [arch.m] * n_blocks if isinstance(arch.m, int) else list(arch.m)
    if len(windows) != n_blocks:
        raise ConfigError(f"m has {len(windows)} values but the network has {n_blocks} blocks")
    return windows
