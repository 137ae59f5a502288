"""From architecture options to a spec, and from a spec to a model.

`build_spec` is pure (options -> immutable NetworkSpec) and imports no torch; `build_model` adds
the executor, imported when called.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import networkx as nx

from connectome.architecture import ArchConfig, layers_per_block, make_arch
from connectome.costs import OP_KINDS, make_divisible
from connectome.errors import ConfigError
from connectome.patterns import BlockContext, Pattern, block_graph, get_pattern
from connectome.spec import INPUT_OP, JOIN_OPS, BlockSpec, NetworkSpec

if TYPE_CHECKING:
    from connectome.executor import ConnectomeNet


def build_spec(arch: ArchConfig) -> NetworkSpec:
    """The network spec of an architecture: stem width, block DAGs, transition widths."""
    return with_block_dropout(SPEC_BUILDERS[arch.family](arch), arch.block_dropout)


def with_block_dropout(spec: NetworkSpec, rates: list[float] | None) -> NetworkSpec:
    """The spec with one dropout rate per block for its layer ops; a ConfigError when the count differs."""
    if rates is None:
        return spec
    if len(rates) != len(spec.blocks):
        raise ConfigError(f"block_dropout has {len(rates)} rates but the network has {len(spec.blocks)} blocks")
    return replace(spec, block_dropout=tuple(float(p) for p in rates))


def _densenet_spec(arch: ArchConfig) -> NetworkSpec:
    """DenseNet macro-structure: stem, blocks of any pattern, BN-ReLU-Conv1x1-pool transitions."""
    pattern = get_pattern(arch.pattern)
    layers = _block_sizes(arch, pattern)
    windows = _partial_windows(arch, len(layers))
    op = "bottleneck" if arch.bottleneck else "conv3x3"
    stem = width = stem_channels(arch, pattern)
    blocks, transitions = [], []
    total, position = _decayed_layers(arch), 1
    for i, n in enumerate(layers):
        ctx = BlockContext(n_layers=n, in_channels=width, growth=arch.growth, op=op, index=i)
        options = dict(arch.pattern_options, **({"m": windows[i]} if windows else {}))
        graph = block_graph(arch.pattern, ctx, **options)
        position += stochastic_depth(graph, position, total, arch.stochastic_depth)
        width = _declared_input(arch, graph, i, width)
        if i == 0:
            stem = width
        else:
            transitions[-1] = width
        block = BlockSpec.from_graph(graph, frozenset(OP_KINDS.costs))
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


def _declared_input(arch: ArchConfig, graph, index: int, width: int) -> int:
    """The block's input width: a graph file's node 0 may fix it (the stem or transition then matches)."""
    declared = graph.nodes[0]["width"]
    if declared != width and index == 0 and arch.stem_channels is not None:
        raise ConfigError(f"block 1's graph file gives node 0 (the block input) width {declared}, but "
                          f"stem_channels={arch.stem_channels}: drop one of them")
    return declared


@dataclass(frozen=True)
class ResNetFamily:
    """What a ResNet baseline puts around its stages (each stage = one block)."""

    pattern: str  # block wiring: how units are joined
    op: str  # a unit's residual branch
    stem: str
    transition: str  # the first unit of stages 2, 3, ... (strided, widening)
    head: str
    convs_per_unit: int
    expansion: int  # a unit's output width / its stage's base width
    bottleneck: bool
    entry_in_stem: bool  # stage 1's first unit widens the stem (bottleneck nets)
    extra_convs: int = 2  # depth = convs_per_unit * units + extra_convs (stem conv, classifier, ...)


RESNET_FAMILIES = {
    "preact-resnet": ResNetFamily("residual", "preact_bottleneck", "preact-entry", "preact", "bn-relu",
                                  convs_per_unit=3, expansion=4, bottleneck=True, entry_in_stem=True),
    "resnet": ResNetFamily("residual-postact", "postact_basic", "postact", "postact", "pool",
                           convs_per_unit=2, expansion=1, bottleneck=False, entry_in_stem=False),
    # Zagoruyko & Komodakis (2016): growth = stage 1's width 16k (k the widening factor); depth = 6n + 4,
    # as their paper counts it (stem conv, classifier and the two strided projections).
    "wide-resnet": ResNetFamily("residual", "preact_basic", "wide-entry", "preact-basic", "bn-relu",
                                convs_per_unit=2, expansion=1, bottleneck=False, entry_in_stem=True, extra_convs=4),
}


def _resnet_spec(arch: ArchConfig) -> NetworkSpec:
    """A CIFAR ResNet of `blocks` stages: base width `growth`, doubled per stage, depth = c*n*b + 2."""
    family = _check_resnet(arch)
    n = resnet_units(arch, family)
    widths = [arch.growth * family.expansion * 2**i for i in range(arch.blocks)]
    blocks = []
    for i, width in enumerate(widths):
        units = n if i == 0 and not family.entry_in_stem else n - 1  # the others are stem/transition
        ctx = BlockContext(n_layers=units, in_channels=width, growth=width, op=family.op, index=i)
        graph = block_graph(arch.pattern, ctx, **arch.pattern_options)
        # units are numbered through the network, the stem's and transitions' included (never dropped)
        stochastic_depth(graph, i * n + 1 + n - units, arch.blocks * n, arch.stochastic_depth)
        blocks.append(BlockSpec.from_graph(graph, frozenset(OP_KINDS.costs)))
    return NetworkSpec(
        stem=family.stem, in_channels=arch.in_channels, stem_channels=widths[0], blocks=tuple(blocks),
        transitions=tuple(widths[1:]), classes=arch.classes, growth=arch.growth, bn_size=arch.bn_size,
        dropout=arch.dropout or 0.0, meta={"pattern": arch.pattern, "preset": arch.preset, "family": arch.family},
        transition=family.transition, head=family.head,
    )


def _check_resnet(arch: ArchConfig) -> ResNetFamily:
    """The family's fixed choices, or a ConfigError naming the conflicting option."""
    family = RESNET_FAMILIES[arch.family]
    _check_fixed(arch, {"pattern": family.pattern, "bottleneck": family.bottleneck, "stem": "cifar",
                        "stem_channels": None, "block_layers": None, "m": None, "compression": 1.0})
    return family


def resnet_units(arch: ArchConfig, family: ResNetFamily) -> int:
    """Units per stage n from depth = convs_per_unit * n * stages + extra_convs (stem conv, classifier, ...)."""
    step, extra = family.convs_per_unit * arch.blocks, family.extra_convs
    if arch.depth is None or arch.depth < step + extra or (arch.depth - extra) % step:
        fits = ", ".join(str(step * n + extra) for n in (1, 2, 3, 18))
        raise ConfigError(f"depth {arch.depth} does not fit family {arch.family!r} with {arch.blocks} stages: "
                          f"need depth = {step}*n + {extra} (e.g. {fits})")
    return (arch.depth - extra) // step


def _fractal_spec(arch: ArchConfig) -> NetworkSpec:
    """FractalNet (Larsson et al. 2016): no stem, blocks of the `fractal` pattern with Conv-BN-ReLU
    layers, 2x2 max pooling between them, global max pooling and a linear classifier.

    Block widths double from `growth` except for the last block (64, 128, 256, 512, 512 for growth 64
    and 5 blocks); depth = blocks * 2^(C-1) + 1 counts the deepest column's convs and the classifier.
    """
    _check_fixed(arch, {"pattern": "fractal", "stem": "cifar", "stem_channels": None, "block_layers": None,
                        "m": None, "bottleneck": False, "compression": 1.0})
    n = fractal_layers(arch)
    widths = [arch.growth * 2 ** max(0, min(i, arch.blocks - 2)) for i in range(arch.blocks)]
    blocks, total, position = [], _decayed_layers(arch), 1
    for i, (cin, width) in enumerate(zip([arch.in_channels, *widths], widths)):
        ctx = BlockContext(n_layers=n, in_channels=cin, growth=width, op="conv_bn_relu", index=i)
        graph = block_graph(arch.pattern, ctx, **arch.pattern_options)
        position += stochastic_depth(graph, position, total, arch.stochastic_depth)
        blocks.append(BlockSpec.from_graph(graph, frozenset(OP_KINDS.costs)))
    return NetworkSpec(
        stem="none", in_channels=arch.in_channels, stem_channels=arch.in_channels, blocks=tuple(blocks),
        transitions=tuple(widths[:-1]), classes=arch.classes, growth=arch.growth, bn_size=arch.bn_size,
        dropout=arch.dropout or 0.0, meta={"pattern": arch.pattern, "preset": arch.preset, "family": arch.family},
        transition="maxpool", head="max-linear",
    )


# Stage widths over growth: FitNet B's 32, 80 and 128 channels at growth 32 (Srivastava et al. 2015).
HIGHWAY_STAGE_SCALE = (1.0, 2.5, 4.0)


def _highway_spec(arch: ArchConfig) -> NetworkSpec:
    """Highway Networks (Srivastava et al. 2015): 3 stages of widths growth x (1, 2.5, 4), each a
    conv + ReLU (the stem, then transitions after 2x2 max pooling) and a block of highway layers whose
    H is Conv3x3-ReLU; the head's 1x1 conv + ReLU, average pooling and a linear classifier.

    depth = highway layers + 3 stage convs + the 1x1 conv + the classifier (19 for [4, 5, 5]).
    """
    _check_fixed(arch, {"pattern": "highway", "blocks": len(HIGHWAY_STAGE_SCALE), "stem": "cifar",
                        "stem_channels": None, "m": None, "bottleneck": False, "compression": 1.0,
                        "stochastic_depth": None})
    widths = [round(arch.growth * scale) for scale in HIGHWAY_STAGE_SCALE]
    blocks = []
    for i, (n, width) in enumerate(zip(layers_per_block(arch), widths)):
        ctx = BlockContext(n_layers=n, in_channels=width, growth=width, op="conv_relu", index=i)
        graph = block_graph(arch.pattern, ctx, **arch.pattern_options)
        blocks.append(BlockSpec.from_graph(graph, frozenset(OP_KINDS.costs)))
    return NetworkSpec(
        stem="highway", in_channels=arch.in_channels, stem_channels=widths[0], blocks=tuple(blocks),
        transitions=tuple(widths[1:]), classes=arch.classes, growth=arch.growth, bn_size=arch.bn_size,
        dropout=arch.dropout or 0.0, meta={"pattern": arch.pattern, "preset": arch.preset, "family": arch.family},
        transition="highway", head="highway",
    )


def fractal_layers(arch: ArchConfig) -> int:
    """The deepest column's layers per block, 2^(C-1), from depth = blocks * 2^(C-1) + 1."""
    per_block, rest = divmod((arch.depth or 0) - 1, arch.blocks)
    if per_block < 1 or rest or per_block & (per_block - 1):
        fits = ", ".join(str(arch.blocks * 2**c + 1) for c in range(4))
        raise ConfigError(f"depth {arch.depth} does not fit family 'fractalnet' with {arch.blocks} blocks: need "
                          f"depth = {arch.blocks} * 2^(C-1) + 1 for C columns (e.g. {fits})")
    return per_block


def _check_fixed(arch: ArchConfig, fixed: dict[str, Any]) -> None:
    """ConfigError naming the first option that differs from what the family fixes."""
    for key, value in fixed.items():
        if getattr(arch, key) != value:
            raise ConfigError(f"family {arch.family!r} needs {key}={value!r}, got {getattr(arch, key)!r}")


def stochastic_depth(graph: nx.DiGraph, first: int, total: int, p_last: float | None) -> int:
    """Huang et al. (2016): the l-th of the network's `total` layers drops with probability
    l / total * p_last (linear decay to p_last = 1 - p_L); sets node `drop` on the block's layer nodes,
    numbered from `first`, and returns how many it has."""
    layers = [v for v in sorted(graph.nodes) if graph.nodes[v]["op"] not in JOIN_OPS | {INPUT_OP}]
    if p_last:
        for j, v in enumerate(layers):
            graph.nodes[v]["drop"] = (first + j) / total * p_last
    return len(layers)


def _decayed_layers(arch: ArchConfig) -> int:
    """The layers stochastic depth numbers (0 without it); a ConfigError where a file sets them."""
    if not arch.stochastic_depth:
        return 0
    total = planned_layers(arch)
    if total is None:
        raise ConfigError(f"stochastic_depth needs the layer count before building; pattern {arch.pattern!r} "
                          "sets its own (give the nodes a `drop` attribute in the graph file instead)")
    return total


def planned_layers(arch: ArchConfig) -> int | None:
    """Layer nodes build_spec makes (as BlockSpec.n_layers counts them), from the options alone.

    None when the count is not known before building: a graph file sets it, or the depth does not
    fit the family (build_spec then says why).
    """
    try:
        if arch.family == "decoder":
            return arch.sublayers
        if arch.family in RESNET_FAMILIES:
            family = RESNET_FAMILIES[arch.family]
            units = resnet_units(arch, family)  # per stage; stem and transitions hold one unit each
            return arch.blocks * (units - 1) + (0 if family.entry_in_stem else 1)
        pattern = get_pattern(arch.pattern)
        if arch.family == "fractalnet":
            return arch.blocks * pattern.layer_nodes(fractal_layers(arch))
        if pattern.own_depth:
            return None
        if arch.family == "efficientnet":  # each stage's first unit is its transition (the stem's for stage 1)
            return sum(pattern.layer_nodes(n - 1) for n in _stage_layers(arch, len(EFFICIENTNET_B0)))
        return sum(pattern.layer_nodes(n) for n in layers_per_block(arch))
    except ConfigError:
        return None


# What the decoder puts around its one block of sublayers, and the ops of the sublayers in turn.
DECODER_OPS = ("attention", "swiglu")
DECODER_FIXED = {"stem": "cifar", "stem_channels": None, "block_layers": None, "bottleneck": False,
                 "compression": 1.0, "memory_efficient": False}


def _decoder_spec(arch: ArchConfig) -> NetworkSpec:
    """A decoder-only LM: token embedding, one block of `sublayers` sublayer nodes, final norm + LM head."""
    _check_decoder(arch)
    ctx = BlockContext(n_layers=arch.sublayers, in_channels=arch.growth, growth=arch.growth,
                       op=DECODER_OPS[0], index=0, ops=DECODER_OPS)
    options = dict(arch.pattern_options, **({"m": arch.m} if arch.m is not None else {}))
    graph = block_graph(arch.pattern, ctx, "decoder", **options)
    block = BlockSpec.from_graph(graph, frozenset(OP_KINDS.costs))
    if arch.tie_embeddings and block.out_channels != arch.growth:
        raise ConfigError(f"pattern {arch.pattern!r} hands the head {block.out_channels} channels, not the width "
                          f"{arch.growth}: a tied LM head needs the width; set tie_embeddings: false")
    op_options = {"heads": arch.heads, "context": arch.context, "sublayers": arch.sublayers,
                  "mlp_hidden": max(1, round(arch.mlp_ratio * arch.growth))}
    return NetworkSpec(
        stem="tokens", in_channels=arch.vocab, stem_channels=arch.growth, blocks=(block,), transitions=(),
        classes=arch.vocab, growth=arch.growth, dropout=arch.dropout or 0.0,
        meta={"pattern": arch.pattern, "preset": arch.preset, "family": arch.family},
        head="lm-tied" if arch.tie_embeddings else "lm", layout="tokens", op_options=tuple(sorted(op_options.items())),
    )


def _check_decoder(arch: ArchConfig) -> None:
    """The image-only keys at their defaults, and heads that split the width into even parts."""
    for key, value in DECODER_FIXED.items():
        if getattr(arch, key) != value:
            raise ConfigError(f"family 'decoder' has no {key} (got {getattr(arch, key)!r}); its keys: growth (the "
                              "width), sublayers, heads, context, mlp_ratio, tie_embeddings, vocab")
    if not isinstance(arch.m, (int, type(None))):
        raise ConfigError(f"family 'decoder': m is one number of sublayer outputs, got {arch.m!r}")
    if arch.growth % growth_step(arch):
        raise ConfigError(f"family 'decoder': heads={arch.heads} must split the width growth={arch.growth} into "
                          "equal heads of even width (rotary positions rotate pairs)")


def growth_step(arch: ArchConfig) -> int:
    """The widths a family accepts are the multiples of this: a decoder's heads of even width, else any."""
    return 2 * arch.heads if arch.family == "decoder" else 1


@dataclass(frozen=True)
class Stage:
    """One block of a staged family: its layers, their width (growth rate) and op, and the transition into it."""

    layers: int
    width: int
    op: str
    transition: str = ""  # the kind of the transition before this stage (none before the first)


# The stems of the staged families by ArchConfig.stem: the papers' ImageNet stems, or their small-image forms.
PATCH_STEMS = {"imagenet": "patch4", "cifar": "patch2"}
EFFICIENTNET_STEMS = {"imagenet": "efficientnet", "cifar": "efficientnet-s1"}


def _convnext_spec(arch: ArchConfig) -> NetworkSpec:
    """ConvNeXt (Liu et al. 2022): patchify stem, stages of ConvNeXt blocks `growth * 2^i` wide, LayerNorm + 2x2/2
    conv downsampling, pooling + LayerNorm + linear head. Summing patterns make ConvNeXt; concatenating ones
    (RDNet's wiring) add `growth` channels per layer in every stage, as DenseNets do (their widths grow by
    concatenation), the stem `growth` wide unless stem_channels says, transitions keeping floor(compression *
    channels)."""
    pattern = get_pattern(arch.pattern)
    _check_fixed(arch, {"bottleneck": False})
    layers = _block_sizes(arch, pattern)
    doubling = 2 if pattern.fixed_width else 1
    stages = [Stage(n, arch.growth * doubling**i, "convnext", "patch-merge") for i, n in enumerate(layers)]
    return _staged_spec(arch, pattern, PATCH_STEMS[arch.stem], stages, head="pool-ln",
                        compress=lambda c: math.floor(arch.compression * c))


# EfficientNet-B0's stages (Tan & Le 2019, Table 1; torchvision): (depthwise kernel, stride, width); the first
# stage's single unit (expansion 1) lives in the stem, the first unit of each later stage is its transition.
EFFICIENTNET_B0 = ((3, 1, 16), (3, 2, 24), (5, 2, 40), (3, 2, 80), (5, 1, 112), (5, 2, 192), (3, 1, 320))
EFFICIENTNET_BASE = 32  # B0's stem width; growth / 32 scales every width (rounded to multiples of 8)


def _efficientnet_spec(arch: ArchConfig) -> NetworkSpec:
    """EfficientNet-B0's macro-structure: block_layers counts each stage's MBConv units (the first one strides
    and widens, outside the block); the block wires the rest (pattern `residual`: the paper's shortcuts)."""
    pattern = get_pattern(arch.pattern)
    _check_fixed(arch, {"bottleneck": False, "stem_channels": None, "compression": 1.0})
    layers = _stage_layers(arch, len(EFFICIENTNET_B0))
    scale = arch.growth / EFFICIENTNET_BASE
    stages = [Stage(n - 1, make_divisible(width * scale), f"mbconv{k}", f"mbconv{k}-s{s}")
              for n, (k, s, width) in zip(layers, EFFICIENTNET_B0)]
    return _staged_spec(arch, pattern, EFFICIENTNET_STEMS[arch.stem], stages, head="efficientnet")


# RDNet-T (Kim et al. 2024; timm `rdnet_tiny`): growth rate per stage, whether the transition into it
# downsamples (LayerNorm + 2x2/2 conv) or only mixes (LayerNorm + Conv1x1), and where effective SE starts.
RDNET_T_GROWTH = (64, 104, 128, 128, 128, 128, 224)
RDNET_T_DOWNSAMPLE = (True, True, True, False, False, False, True)  # the first entry: the stem's patchify
RDNET_ESE_FROM = 2  # stages from the third on use feature mixers with effective SE
RDNET_BASE = 64  # RDNet-T's stem width; growth / 64 scales the stage growth rates


def _rdnet_spec(arch: ArchConfig) -> NetworkSpec:
    """RDNet (Kim et al. 2024): patchify stem, seven stages of feature mixers over concatenated inputs, transitions
    that LayerNorm and compress to int(compression * channels / 8) * 8, downsampling only into stages 2, 3 and 7."""
    pattern = get_pattern(arch.pattern)
    if pattern.fixed_width:
        raise ConfigError(f"family 'rdnet' concatenates (its transitions compress): pattern {arch.pattern!r} "
                          "sums; use family 'convnext' for summed ConvNeXt blocks")
    _check_fixed(arch, {"bottleneck": False})
    layers = _stage_layers(arch, len(RDNET_T_GROWTH))
    stages = [Stage(n, round(g * arch.growth / RDNET_BASE), "rdnet_ese" if i >= RDNET_ESE_FROM else "rdnet",
                    "patch-merge" if down else "ln-conv1x1")
              for i, (n, g, down) in enumerate(zip(layers, RDNET_T_GROWTH, RDNET_T_DOWNSAMPLE))]
    return _staged_spec(arch, pattern, PATCH_STEMS[arch.stem], stages, head="pool-ln",
                        compress=lambda c: max(8, int(c * arch.compression / 8) * 8))


def _stage_layers(arch: ArchConfig, stages: int) -> list[int]:
    """block_layers of a family with a fixed number of stages, or a ConfigError saying how many."""
    if arch.block_layers is None or len(arch.block_layers) != stages:
        raise ConfigError(f"family {arch.family!r} has {stages} stages: give block_layers with {stages} "
                          f"entries, got {arch.block_layers}")
    return list(arch.block_layers)


def _staged_spec(arch: ArchConfig, pattern: Pattern, stem: str, stages: list[Stage], head: str,
                 compress=None) -> NetworkSpec:
    """Stem, one block per stage, the stages' transitions, head. A summing pattern's block reads the stage's
    width (the transition widens to it); a concatenating one reads the stem's width or the previous block's
    output compressed (`compress`; None: the stage's width)."""
    fixed = pattern.fixed_width or compress is None
    if fixed and arch.stem_channels not in (None, stages[0].width):
        raise ConfigError(f"family {arch.family!r} with pattern {arch.pattern!r}: the stem has the first stage's "
                          f"width {stages[0].width}, not stem_channels={arch.stem_channels}")
    width = stages[0].width if fixed or arch.stem_channels is None else arch.stem_channels
    windows = _partial_windows(arch, len(stages))
    blocks, widths, total, position = [], [], _decayed_layers(arch), 1
    for i, stage in enumerate(stages):
        if i:
            width = stage.width if fixed else compress(blocks[-1].out_channels)
        ctx = BlockContext(n_layers=stage.layers, in_channels=width, growth=stage.width, op=stage.op, index=i)
        options = dict(arch.pattern_options, **({"m": windows[i]} if windows else {}))
        graph = block_graph(arch.pattern, ctx, **options)
        position += stochastic_depth(graph, position, total, arch.stochastic_depth)
        widths.append(_declared_input(arch, graph, i, width))
        blocks.append(BlockSpec.from_graph(graph, frozenset(OP_KINDS.costs)))
    return NetworkSpec(
        stem=stem, in_channels=arch.in_channels, stem_channels=widths[0], blocks=tuple(blocks),
        transitions=tuple(widths[1:]), classes=arch.classes, growth=arch.growth, bn_size=arch.bn_size,
        dropout=arch.dropout or 0.0, meta={"pattern": arch.pattern, "preset": arch.preset, "family": arch.family},
        head=head, **_transition_fields([s.transition for s in stages[1:]] or [stages[0].transition]),
    )


def _transition_fields(kinds: list[str]) -> dict[str, Any]:
    """One `transition` kind where all agree, else each one's (NetworkSpec.transition_kinds)."""
    if len(set(kinds)) == 1:
        return {"transition": kinds[0]}
    return {"transition": kinds[0], "transition_kinds": tuple(kinds)}


SPEC_BUILDERS = {"densenet": _densenet_spec, **{family: _resnet_spec for family in RESNET_FAMILIES},
                 "fractalnet": _fractal_spec, "highway": _highway_spec, "decoder": _decoder_spec,
                 "convnext": _convnext_spec, "efficientnet": _efficientnet_spec, "rdnet": _rdnet_spec}


def build_model(arch: ArchConfig | None = None, **options: Any) -> ConnectomeNet:
    """A model from an ArchConfig or from keyword options (`build_model(preset="densenet121")`)."""
    from connectome.executor import ConnectomeNet  # torch: only a model needs it, not a spec
    if arch is None:
        arch = make_arch(**options)
    elif options:
        arch = make_arch(**{**arch.model_dump(), **options})
    return ConnectomeNet(build_spec(arch), memory_efficient=arch.memory_efficient)


def resolved_m(arch: ArchConfig, spec: NetworkSpec) -> list[int] | None:
    """The partial pattern's window per block as built (None = the pattern's default, resolved); None otherwise.

    The window may come as `m` or as a pattern option; the default is the block input width for the image
    families and the pattern's own (a number of sublayer outputs) for the decoder.
    """
    if arch.m is None and "m" in arch.pattern_options:
        arch = arch.model_copy(update={"m": arch.pattern_options["m"]})
    windows = _partial_windows(arch, len(spec.blocks))
    if windows is None:
        return None
    if arch.family == "decoder":
        default = inspect.signature(get_pattern(arch.pattern, "decoder").build).parameters["m"].default
        return [default if m is None else m for m in windows]
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
