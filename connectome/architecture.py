"""Architecture options, validated once at the edge, and the presets that name them.

`ArchConfig` is the single input of `build_spec` (and so of `build_model`): the same keys
are used by the CLI (`connectome graph --pattern ...`), by trial configs and by study files.
"""
from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectome.errors import ConfigError, describe_validation, unknown_name


class ArchConfig(BaseModel):
    """Everything that defines one network; frozen, so it can key caches and hashes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Name of a preset (see PRESETS); its values are defaults that explicit keys override.
    preset: str | None = None
    # What surrounds the blocks (stem, transitions, unit op, head): "densenet", or the ResNet
    # baselines "preact-resnet" (He et al. 2016, bottleneck) and "resnet" (He et al. 2015, basic), or
    # "wide-resnet" (Zagoruyko & Komodakis 2016: pre-activation basic units, growth = 16 x widening factor).
    # "fractalnet" (Larsson et al. 2016: pattern `fractal`, no stem, max pooling between blocks).
    # "highway" (Srivastava et al. 2015: pattern `highway`, a conv + ReLU opening each of 3 stages,
    # max pooling between them, a 1x1 conv + ReLU, average pooling and a linear classifier).
    # "decoder": a decoder-only language model whose layers are attention and SwiGLU sublayers
    # (token embedding, one block of `sublayers` nodes of width `growth`, final RMSNorm + LM head).
    # "convnext" (Liu et al. 2022: patchify stem, ConvNeXt blocks, stage widths growth * 2^i, any pattern),
    # "efficientnet" (Tan & Le 2019: EfficientNet-B0's MBConv stages, widths scaled by growth / 32),
    # "rdnet" (Kim et al. 2024: RDNet-T's seven stages of feature mixers, growth rates scaled by growth / 64).
    family: Literal["densenet", "preact-resnet", "resnet", "wide-resnet", "fractalnet", "highway", "decoder",
                    "convnext", "efficientnet", "rdnet"] = "densenet"
    # Connectivity inside each block: a key of connectome.patterns.PATTERNS.
    pattern: str = "dense"
    # Options of the pattern, e.g. {"model": "ws", "k": 4, "p": 0.25, "seed": 0} for random.
    pattern_options: dict[str, Any] = Field(default_factory=dict)
    # Total depth L as in the paper (convs + transitions + classifier); derived from block_layers.
    depth: int | None = 40
    # Number of dense blocks when the layers are derived from depth.
    blocks: int = Field(3, ge=1)
    # Explicit layers per block (e.g. [6, 12, 24, 16]); overrides depth and blocks.
    block_layers: list[int] | None = None
    # Growth rate k: channels each layer adds (the layer width for sum/chain patterns).
    growth: int = 12
    # DenseNet-B: a 1x1 bottleneck conv to bn_size*k channels before each 3x3 conv.
    bottleneck: bool = False
    bn_size: int = Field(4, ge=1)
    # DenseNet-C: transitions keep floor(compression * channels).
    compression: float = Field(1.0, gt=0.0, le=1.0)
    # Partial pattern: window of most recent input channels per block (one int = all blocks).
    m: list[int] | int | None = None
    # Stem: "cifar" (3x3 conv) or "imagenet" (7x7/2 conv, BN, ReLU, 3x3/2 max pool).
    stem: Literal["cifar", "imagenet"] = "cifar"
    # Stem output channels; default 16, or 2k with a bottleneck (as in the paper).
    stem_channels: int | None = None
    classes: int = Field(10, ge=1)
    in_channels: int = Field(3, ge=1)
    # Dropout after each conv; None lets the trainer choose (0.2 without augmentation).
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    # Dropout of the layer ops of each block, one rate per block (FractalNet's 0, 0.1, 0.2, 0.3, 0.4);
    # None: every block's ops use `dropout` (stems, transitions and heads always do). Hashed only when set.
    block_dropout: list[float] | None = Field(None, exclude_if=lambda v: v is None)
    # Stochastic depth (Huang et al. 2016): the l-th of the network's L layers (ResNet units) is skipped
    # in a training batch with probability l/L * stochastic_depth, and scaled by its survival in
    # evaluation; 0.5 is their p_L = 0.5. Hashed only when set.
    stochastic_depth: float | None = Field(None, ge=0.0, lt=1.0, exclude_if=lambda v: v is None)
    # Recompute aggregation + BN + ReLU in backward (Pleiss et al. 2017); execution only.
    memory_efficient: bool = False
    # Decoder family only (growth is its width). Left out of dumps at their defaults, so trial ids
    # of earlier studies stay the same.
    # Sublayers (attention, SwiGLU, attention, ...): twice the number of transformer blocks.
    sublayers: int = Field(8, ge=1, exclude_if=lambda v: v == 8)
    # Attention heads; they divide the width, and each head's width is even (rotary pairs).
    heads: int = Field(4, ge=1, exclude_if=lambda v: v == 4)
    # Context length in tokens (the longest sequence; attention costs are counted at it).
    context: int = Field(256, ge=1, exclude_if=lambda v: v == 256)
    # SwiGLU hidden width = round(mlp_ratio * width); 8/3 matches a 4x GELU MLP's parameters (LLaMA).
    mlp_ratio: float = Field(8 / 3, gt=0.0, exclude_if=lambda v: v == 8 / 3)
    # The LM head reuses the token embedding's matrix (tied) or has its own.
    tie_embeddings: bool = Field(True, exclude_if=lambda v: v is True)
    # Vocabulary size (256: bytes).
    vocab: int = Field(256, ge=2, exclude_if=lambda v: v == 256)

    @model_validator(mode="before")
    @classmethod
    def _depth_from_block_layers(cls, data: Any) -> Any:
        """With explicit block_layers, depth and blocks describe them (records show what was built)."""
        if isinstance(data, dict) and isinstance(data.get("block_layers"), list) and data["block_layers"]:
            layers = data["block_layers"]
            per_layer = 2 if data.get("bottleneck") else 1
            if all(isinstance(n, int) for n in layers):
                head = HEAD_LAYERS.get(data.get("family"), 1)
                data = {**data, "blocks": len(layers), "depth": per_layer * sum(layers) + len(layers) + head}
        return data

    @model_validator(mode="after")
    def _decoder_keys_for_decoders(self) -> "ArchConfig":
        """The decoder's keys on an image family would be silently ignored: refuse them."""
        if self.family != "decoder":
            given = sorted(k for k in DECODER_KEYS if getattr(self, k) != type(self).model_fields[k].default)
            if given:
                raise ValueError(f"{', '.join(given)}: decoder keys, but family is {self.family!r} "
                                 "(set family: decoder)")
        return self

    @field_validator("growth")
    @classmethod
    def _positive_growth(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"growth must be a positive number of channels, got {v}")
        return v

    @field_validator("block_dropout")
    @classmethod
    def _dropout_rates(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(not 0.0 <= p < 1.0 for p in v)):
            raise ValueError(f"block_dropout needs one rate in [0, 1) per block, got {v}")
        return v

    @field_validator("block_layers")
    @classmethod
    def _positive_layers(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(n <= 0 for n in v)):
            raise ValueError(f"block_layers needs at least one block, each with >= 1 layer, got {v}")
        return v


# The families, as the `family` key allows them (the CLI's --family choices).
FAMILIES = get_args(ArchConfig.model_fields["family"].annotation)

# Layers that depth counts after the last block: the classifier, and before it the highway
# family's 1x1 conv (Srivastava et al.'s 19 layers: 17 3x3 convs, the 1x1 conv, the classifier).
HEAD_LAYERS = {"highway": 2}

DECODER_KEYS = ("sublayers", "heads", "context", "mlp_ratio", "tie_embeddings", "vocab")


def decoder_columns(arch: ArchConfig) -> dict[str, Any]:
    """A decoder's own keys with their values, defaults included: its config dump leaves a default out (so
    trial ids stay as they were), a record must not (a study over sublayers 8, 16, 32 would read 8 as
    missing)."""
    return {key: getattr(arch, key) for key in DECODER_KEYS} if arch.family == "decoder" else {}


PRESETS: dict[str, dict[str, Any]] = {
    # Table 1 of the paper (arXiv 1608.06993 v1, 2016): its CIFAR/SVHN DenseNets.
    "densenet-40-12": dict(depth=40, growth=12),
    "densenet-100-12": dict(depth=100, growth=12),
    "densenet-100-24": dict(depth=100, growth=24),
    # DenseNet-BC: only in the later CVPR 2017 version (its Table 2).
    "densenet-bc-100-12": dict(depth=100, growth=12, bottleneck=True, compression=0.5),
    "densenet-bc-250-24": dict(depth=250, growth=24, bottleneck=True, compression=0.5),
    "densenet-bc-190-40": dict(depth=190, growth=40, bottleneck=True, compression=0.5),
    # The partial DenseNet of v1's Section 5 (Figure 6): m = block input channels (16, 160, 304).
    "partial-40-12": dict(pattern="partial", depth=40, growth=12),
    # Table 1's ResNet baselines, built by the same executor. growth = the first stage's base
    # width (16); stages have 16/32/64 channels (x4 at a bottleneck unit's output).
    "preact-resnet-164": dict(family="preact-resnet", pattern="residual", depth=164, growth=16,
                              bottleneck=True, dropout=0.0),
    "preact-resnet-1001": dict(family="preact-resnet", pattern="residual", depth=1001, growth=16,
                               bottleneck=True, dropout=0.0),
    "resnet-110": dict(family="resnet", pattern="residual-postact", depth=110, growth=16, dropout=0.0),
    # Table 1's Wide ResNets, WRN-d-k (Zagoruyko & Komodakis 2016): depth d = 6n + 4, stage widths
    # 16k/32k/64k (growth = 16k). Dropout sits between a unit's two convs; 0.4 is the rate their
    # paper gives for SVHN, where Table 1 lists WRN-16-4 with dropout.
    "wrn-16-8": dict(family="wide-resnet", pattern="residual", depth=16, growth=128, dropout=0.0),
    "wrn-28-10": dict(family="wide-resnet", pattern="residual", depth=28, growth=160, dropout=0.0),
    "wrn-16-4-dropout": dict(family="wide-resnet", pattern="residual", depth=16, growth=64, dropout=0.4),
    # Table 1's FractalNet (Larsson et al. 2016), C10 setting: 5 blocks of C = 3 columns (the deepest
    # 4 convs long: 20 convs + classifier = 21 layers), widths 64/128/256/512/512, mean joins. It
    # counts 33.7M parameters, as independent reimplementations of the paper's description do;
    # Table 1 (from the FractalNet paper) says 38.6M (docs/table1_presets.md). The drop-path
    # variant: local drop-path 0.15 on every join input, global drop-path on half of the batches, and
    # its paper's dropout by block, 0, 0.1, 0.2, 0.3, 0.4.
    "fractalnet-21": dict(family="fractalnet", pattern="fractal", depth=21, blocks=5, growth=64, dropout=0.0),
    "fractalnet-21-droppath": dict(family="fractalnet", pattern="fractal", depth=21, blocks=5, growth=64,
                                   dropout=0.0, pattern_options={"drop": 0.15, "global_drop": 0.5},
                                   block_dropout=[0.0, 0.1, 0.2, 0.3, 0.4]),
    # Table 1's ResNets with stochastic depth (Huang et al. 2016): He et al.'s basic ResNets, the
    # l-th of L units skipped with probability l/L * 0.5 (p_L = 0.5). 110 layers: 1.7M as Table 1;
    # 1202 layers: 19.4M (He et al. 2015's count for ResNet-1202; Table 1 says 10.2M).
    "resnet-sd-110": dict(family="resnet", pattern="residual-postact", depth=110, growth=16, dropout=0.0,
                          stochastic_depth=0.5),
    "resnet-sd-1202": dict(family="resnet", pattern="residual-postact", depth=1202, growth=16, dropout=0.0,
                           stochastic_depth=0.5),
    # Table 1's Highway Network (Srivastava et al. 2015), C10+ 7.72%: their 19-layer CIFAR net ("Highway B",
    # ~2.3M), as their Caffe model (flukeskywalker/highway-networks): stages of 32, 80, 128 channels, each a
    # conv + ReLU then 4, 5, 5 highway layers; dropout 0.2 on each stage's input and before the classifier.
    "highway-19": dict(family="highway", pattern="highway", block_layers=[4, 5, 5], growth=32, dropout=0.2),
    # ImageNet DenseNets (CVPR 2017 version only), as in torchvision.
    "densenet121": dict(stem="imagenet", block_layers=[6, 12, 24, 16], growth=32,
                        bottleneck=True, compression=0.5, classes=1000),
    "densenet169": dict(stem="imagenet", block_layers=[6, 12, 32, 32], growth=32,
                        bottleneck=True, compression=0.5, classes=1000),
    "densenet201": dict(stem="imagenet", block_layers=[6, 12, 48, 32], growth=32,
                        bottleneck=True, compression=0.5, classes=1000),
    # The successors the paper's critics name and RDNet (issue 29), as torchvision and timm build them
    # (their outputs equal given the same weights: tests/test_modern.py). Stochastic depth is not part
    # of the presets (set stochastic_depth: it is the wiring language's node drop, docs/design.md).
    "convnext_tiny": dict(family="convnext", pattern="residual", block_layers=[3, 3, 9, 3], growth=96,
                          stem="imagenet", classes=1000, dropout=0.0),
    "efficientnet_b0": dict(family="efficientnet", pattern="residual", block_layers=[1, 2, 2, 3, 3, 4, 1], growth=32,
                            bn_size=6, stem="imagenet", classes=1000, dropout=0.0),
    "rdnet_tiny": dict(family="rdnet", pattern="dense", block_layers=[3] * 7, growth=64, compression=0.5,
                       stem="imagenet", classes=1000, dropout=0.0),
}


def make_arch(**options: Any) -> ArchConfig:
    """ArchConfig from keyword options; a preset supplies defaults that options override."""
    preset = options.get("preset")
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(unknown_name("preset", preset, PRESETS))
        base = dict(PRESETS[preset])
    base.update({k: v for k, v in options.items() if v is not None})
    try:
        return ArchConfig(**base)
    except ValidationError as err:
        problems = describe_validation(err, "see connectome/architecture.py")
        raise ConfigError(f"invalid architecture: {problems}") from err


def layers_per_block(arch: ArchConfig) -> list[int]:
    """Layers in each block: block_layers, or derived from depth as L = b*n*(1 or 2) + b + 1."""
    if arch.block_layers is not None:
        return list(arch.block_layers)
    if arch.depth is None:
        raise ConfigError("give either depth or block_layers")
    per_layer = 2 if arch.bottleneck else 1
    extra = arch.blocks + HEAD_LAYERS.get(arch.family, 1)  # stem conv, transitions, head
    convs = arch.depth - extra
    step = arch.blocks * per_layer
    if convs < step or convs % step:
        fits = [extra + step * n for n in range(1, 4)]
        raise ConfigError(
            f"depth {arch.depth} does not fit {arch.blocks} blocks"
            f"{' with bottlenecks' if arch.bottleneck else ''}: need depth = {step}*n + {extra}"
            f" (e.g. {', '.join(map(str, fits))}), or give block_layers"
        )
    return [convs // step] * arch.blocks
