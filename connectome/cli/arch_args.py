"""Architecture flags shared by every command that builds a network (graph, train)."""
from __future__ import annotations

import argparse
from typing import Any

from connectome.overrides import parse_assignment


def int_list(text: str) -> list[int]:
    """'6,12,24,16' -> [6, 12, 24, 16]."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def float_list(text: str) -> list[float]:
    """'0,0.1,0.2' -> [0.0, 0.1, 0.2]."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def add_arch_arguments(parser: argparse.ArgumentParser) -> None:
    """The ArchConfig keys as flags; unset flags keep the preset's or the default value."""
    from connectome.architecture import FAMILIES, PRESETS
    from connectome.patterns import DECODER_PATTERNS, PATTERNS

    g = parser.add_argument_group("architecture")
    g.add_argument("--preset", metavar="NAME", help=f"named configuration: {', '.join(PRESETS)}")
    g.add_argument("--family", choices=FAMILIES,
                   help="what surrounds the blocks: DenseNet, a Table 1 network's family (see presets), or a decoder LM")
    # Lists plugins' patterns too: the CLI loads entry-point plugins before building parsers.
    g.add_argument("--pattern", metavar="NAME", help=f"block connectivity: {', '.join(PATTERNS)}; "
                                                     f"decoder: {', '.join(DECODER_PATTERNS)}")
    g.add_argument("--pattern-option", action="append", default=[], metavar="KEY=VALUE",
                   help="pattern option, repeatable (e.g. model=ws, p=0.25, path=g.graphml)")
    g.add_argument("--depth", type=int, help="total depth L as in the paper")
    g.add_argument("--blocks", type=int, help="number of blocks when deriving layers from depth")
    g.add_argument("--block-layers", type=int_list, help="layers per block, e.g. 6,12,24,16")
    g.add_argument("--growth", type=int, help="growth rate k (layer width)")
    g.add_argument("--bottleneck", action=argparse.BooleanOptionalAction, default=None,
                   help="1x1 bottleneck to bn_size*k before each 3x3 conv (DenseNet-B)")
    g.add_argument("--bn-size", type=int, help="bottleneck width multiple (default 4)")
    g.add_argument("--compression", type=float, help="transition compression theta (0.5 for -BC)")
    g.add_argument("--m", type=int_list, help="partial pattern: channels each layer reads, per block")
    g.add_argument("--stem", choices=["cifar", "imagenet"],
                   help="first layers: cifar (3x3 conv) or imagenet (7x7/2 conv, 3x3/2 max pool)")
    g.add_argument("--stem-channels", type=int, help="stem output channels (default 16, or 2k with a bottleneck)")
    g.add_argument("--classes", type=int, help="number of output classes (default 10)")
    g.add_argument("--in-channels", type=int, help="input image channels (default 3)")
    g.add_argument("--dropout", type=float, help="dropout rate after each conv (default: chosen by the trainer)")
    g.add_argument("--block-dropout", type=float_list, metavar="P,P,...",
                   help="dropout of each block's layers, one rate per block (FractalNet: 0,0.1,0.2,0.3,0.4)")
    g.add_argument("--stochastic-depth", type=float, metavar="P",
                   help="stochastic depth: the l-th of L layers skipped with probability l/L * P in training")
    g.add_argument("--sublayers", type=int, help="decoder: attention and MLP sublayers in all (default 8)")
    g.add_argument("--heads", type=int, help="decoder: attention heads (default 4)")
    g.add_argument("--context", type=int, help="decoder: context length in tokens (default 256)")
    g.add_argument("--mlp-ratio", type=float, help="decoder: SwiGLU hidden width / width (default 8/3)")
    g.add_argument("--tie-embeddings", action=argparse.BooleanOptionalAction, default=None,
                   help="decoder: the LM head reuses the token embedding (default yes)")
    g.add_argument("--vocab", type=int, help="decoder: vocabulary size (default 256, bytes)")
    g.add_argument("--memory-efficient", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute concatenation + BN + ReLU in backward to save memory (same results)")


_KEYS = ("preset", "family", "pattern", "depth", "blocks", "block_layers", "growth", "bottleneck", "bn_size",
         "compression", "stem", "stem_channels", "classes", "in_channels", "dropout", "block_dropout",
         "stochastic_depth", "memory_efficient", "sublayers", "heads", "context", "mlp_ratio", "tie_embeddings", "vocab")


def arch_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, as ArchConfig keyword options."""
    opts = {k: getattr(args, k) for k in _KEYS if getattr(args, k) is not None}
    if args.m is not None:
        opts["m"] = args.m[0] if len(args.m) == 1 else args.m
    if args.pattern_option:
        opts["pattern_options"] = dict(parse_assignment(item, "--pattern-option", "model=ws") for item in args.pattern_option)
    return opts
