"""`connectome graph`: build a spec and show it (text, json, dot, graphml) with its complexity."""
from __future__ import annotations

import argparse
import json
from typing import Callable

from connectome.cli.arch_args import add_arch_arguments, arch_options


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `graph` subcommand."""
    p = sub.add_parser(
        "graph", help="show a network's connectivity, params and FLOPs (multiply-adds); export a block",
        description="Build a network from the architecture flags and print its wiring with params, FLOPs "
                    "(multiply-adds per image) and activations; or export one block's graph (--block N "
                    "--format graphml|json) in the format `--pattern file --pattern-option path=FILE` reads.")
    add_arch_arguments(p)
    p.add_argument("--input-size", type=int, help="input height = width (default 32 cifar, 224 imagenet)")
    p.add_argument("--format", choices=sorted(FORMATS), default="text",
                   help="text (readable), json (spec with complexity), dot (Graphviz) or graphml (whole "
                        "network); with --block: graphml or json, the block alone, as `--pattern file` reads it")
    p.add_argument("--block", type=int, metavar="N",
                   help="export only block N (1 = first) as a graph file for `--pattern file`; edit and re-import it")
    p.add_argument("--limit", action="append", default=[], metavar="KEY=N",
                   help="raise a size bound (depth, growth; defaults as for studies), e.g. --limit depth=2000")
    p.add_argument("--hash", dest="lookup_hash", metavar="H",
                   help="show the trained spec(s) whose graph_hash or canonical_hash starts with H (needs --results)")
    p.add_argument("--results", metavar="DIR", help="results directory searched by --hash")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the spec and print it in the chosen format (or look trained specs up by hash)."""
    from connectome.architecture import make_arch
    from connectome.builder import build_spec

    if args.lookup_hash is not None or args.results is not None:
        return run_lookup(args)
    arch = make_arch(**arch_options(args))
    limits = check_limits(arch, args.limit)
    spec = build_spec(arch)
    check_built_limits(spec, limits)  # graph files set their own depth: checked before any hash
    if args.block is not None:
        print(export_block(spec, args.block, args.format))
        return 0
    print(render(args.format, arch, spec, args.input_size))
    return 0


def render(fmt: str, arch, spec, input_size: int | None) -> str:
    """One spec in the requested format, with its complexity."""
    from connectome.complexity import complexity

    size = None if input_size is None else (arch.in_channels, input_size, input_size)
    cx = complexity(spec, size, memory_efficient=arch.memory_efficient)
    return FORMATS[fmt](arch, spec, cx, size)


def run_lookup(args: argparse.Namespace) -> int:
    """`--hash H --results DIR`: every trial whose spec matches, shown in the requested format."""
    from connectome.analysis.lookup import find_specs
    from connectome.errors import ConfigError

    if args.lookup_hash is None or args.results is None:
        raise ConfigError("--hash and --results go together: connectome graph --hash H --results DIR")
    for match in find_specs(args.results, args.lookup_hash):
        if args.format == "text":
            print(f"trial {match.trial_id}")
        print(render(args.format, match.arch, match.spec, args.input_size))
    return 0


def export_block(spec, number: int, fmt: str) -> str:
    """Block `number` (1-based) as GraphML or node-link JSON, exactly what `--pattern file` reads."""
    from connectome.errors import ConfigError

    if fmt not in BLOCK_FORMATS:
        raise ConfigError(f"--block exports a graph file: use --format {' or '.join(BLOCK_FORMATS)}, not {fmt!r}")
    if not 1 <= number <= len(spec.blocks):
        raise ConfigError(f"--block {number}: the network has blocks 1..{len(spec.blocks)}")
    return BLOCK_FORMATS[fmt](block_graph(spec.blocks[number - 1]))


def block_graph(block):
    """One block as a networkx DiGraph with every attribute the file pattern reads (node 0's width included)."""
    return block.to_graph(text_windows=True)


def _block_graphml(g) -> str:
    import networkx as nx

    return "\n".join(nx.generate_graphml(g))


def _block_json(g) -> str:
    import networkx as nx

    return json.dumps(nx.node_link_data(g, edges="links"), indent=1)


BLOCK_FORMATS: dict[str, Callable] = {"graphml": _block_graphml, "json": _block_json}


# How `connectome graph` raises a bound, for the error message.
LIMIT_HOW = "with --limit {key}=N"


def check_limits(arch, assignments: list[str]):
    """The size bounds for this network, checked before its spec is built, and returned; --limit KEY=N raises one."""
    from pydantic import ValidationError

    from connectome.errors import ConfigError
    from connectome.overrides import parse_assignment
    from connectome.study.limits import Limits, check_arch_limits

    try:
        limits = Limits.model_validate(dict(parse_assignment(a, "--limit", "depth=2000") for a in assignments))
        check_arch_limits(arch, limits, how=LIMIT_HOW)
    except ValidationError as err:
        raise ConfigError(f"--limit: {err.errors()[0]['loc'][0]}: {err.errors()[0]['msg']} "
                          f"(keys: {', '.join(Limits.model_fields)})") from None
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return limits


def check_built_limits(spec, limits) -> None:
    """The layers of the built spec (a graph file's count) against the depth bound."""
    from connectome.errors import ConfigError
    from connectome.study.limits import check_spec_limits

    try:
        check_spec_limits(spec, limits, how=LIMIT_HOW)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def as_json(arch, spec, cx, size) -> str:
    return json.dumps({
        "params": cx.params, "flops": cx.flops, "activations": cx.acts, "graph_hash": spec.graph_hash,
        "canonical_hash": spec.canonical_hash,
        "input_size": list(size) if size else None, "arch": arch.model_dump(), "spec": spec.to_dict(),
    }, indent=2)


def as_text(arch, spec, cx, size) -> str:
    lines = HEADERS[spec.layout](arch, spec, cx, size)
    for i, block in enumerate(spec.blocks):
        lines += _block_lines(i, block, with_ops=spec.layout == "tokens")
        if i < len(spec.transitions):
            lines.append(f"transition {i + 1}: {block.out_channels} -> {spec.transitions[i]} channels, "
                         f"{TRANSITION_TEXT.get(spec.transition_kind(i), spec.transition_kind(i))}")
    return "\n".join(lines)


def _maps_header(arch, spec, cx, size) -> list[str]:
    """An image network's summary: blocks, growth, stem, params, multiply-adds per image."""
    layers = [b.n_layers for b in spec.blocks]
    return [
        f"pattern {arch.pattern}{f' (preset {arch.preset})' if arch.preset else ''}: {len(layers)} blocks x "
        f"{layers} layers, growth {spec.growth}, stem {spec.stem} ({spec.stem_channels} ch), "
        f"{spec.classes} classes",
        f"params {cx.params:,} ({cx.params / 1e6:.2f}M)   FLOPs {cx.flops / 1e9:.3f} G multiply-adds"
        f"{f' at {size[0]}x{size[1]}x{size[2]}' if size else ''}   activations {cx.acts / 1e6:.2f}M/sample"
        f"   hash {spec.graph_hash} (canonical {spec.canonical_hash})",
    ]


def _tokens_header(arch, spec, cx, size) -> list[str]:
    """A decoder's summary: shape, params, multiply-adds per token at full context."""
    opts = dict(spec.op_options)
    head = "tied to the embedding" if spec.head == "lm-tied" else "untied"
    return [
        f"decoder pattern {arch.pattern}: {opts['sublayers']} sublayers (attention, swiglu, ...), width "
        f"{spec.growth}, {opts['heads']} heads, context {opts['context']}, MLP hidden {opts['mlp_hidden']}, "
        f"vocab {spec.classes}, LM head {head}",
        f"params {cx.params:,} ({cx.params / 1e6:.2f}M)   {cx.flops:,} multiply-adds per token "
        f"({cx.flops / 1e6:.3f} M, attention over a full context)   activations {cx.acts:,}/token"
        f"   hash {spec.graph_hash} (canonical {spec.canonical_hash})",
    ]


HEADERS: dict[str, Callable] = {"maps": _maps_header, "tokens": _tokens_header}


TRANSITION_TEXT = {
    "densenet": "BN-ReLU-Conv1x1, 2x2 avg pool",
    "preact": "pre-activation bottleneck unit, stride 2, projection shortcut",
    "postact": "basic unit, stride 2, zero-padded identity shortcut",
    "preact-basic": "pre-activation wide basic unit, stride 2, projection shortcut",
}


def _block_lines(i: int, block, with_ops: bool = False) -> list[str]:
    degrees = [len(block.inputs[v]) for v in range(1, block.output + 1)]
    lines = [
        f"block {i + 1}: {block.in_channels} -> {block.out_channels} channels, {block.n_layers} layers, "
        f"{len(block.edges)} edges, in-degree min {min(degrees)} / mean {sum(degrees) / len(degrees):.1f} "
        f"/ max {max(degrees)}" + (f", global drop-path {block.global_drop:g}" if block.global_drop else "")
    ]
    for v in range(1, block.output + 1):
        name = "out" if v == block.output else str(v)
        if with_ops and v != block.output:
            name += f" {block.nodes[v].op}"
        node = block.nodes[v]
        srcs = ", ".join(_source(e) for e in block.inputs[v])
        extra = _attributes(node.attributes(), ", ")
        lines.append(f"  {name:>4} <- {srcs}   ({node.agg} {block.input_width(v)} ch{extra})")
    return lines


def _source(edge) -> str:
    name = str(edge.src) if edge.window is None else f"{edge.src}[{edge.window[0]}:{edge.window[1]}]"
    return name + _attributes(edge.attributes())


def _attributes(attributes: dict, lead: str | None = None) -> str:
    """Wiring attributes as ` (key=value, ...)`, or after `lead`; empty when none is set."""
    text = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in attributes.items())
    if not attributes:
        return ""
    return f"{lead}{text}" if lead else f" ({text})"


def _combined_graph(spec):
    import networkx as nx

    g = (nx.MultiDiGraph if any(b.parallel for b in spec.blocks) else nx.DiGraph)(hash=spec.graph_hash)
    for i, block in enumerate(spec.blocks):
        for n in block.nodes:
            extra = {**n.attributes(), **({"global_drop": block.global_drop} if n.id == 0 and block.global_drop
                                          else {})}
            g.add_node(f"b{i + 1}_{n.id}", block=i + 1, node=n.id, op=n.op, agg=n.agg, width=n.width, **extra)
        for e in block.edges:
            attrs = {"window": f"{e.window[0]}:{e.window[1]}"} if e.window else {}
            g.add_edge(f"b{i + 1}_{e.src}", f"b{i + 1}_{e.dst}", **attrs, **e.attributes())
        if i < len(spec.transitions):
            g.add_edge(f"b{i + 1}_{block.output}", f"b{i + 2}_0", transition=spec.transitions[i])
    return g


def as_graphml(arch, spec, cx, size) -> str:
    import networkx as nx

    return "\n".join(nx.generate_graphml(_combined_graph(spec)))


def as_dot(arch, spec, cx, size) -> str:
    lines = [f'digraph "{arch.pattern}" {{', "  rankdir=LR; node [shape=box, fontsize=10];"]
    for i, block in enumerate(spec.blocks):
        lines.append(f'  subgraph cluster_{i + 1} {{ label="block {i + 1}";')
        for n in block.nodes:
            label = {"input": "in", "identity": "out"}.get(n.op, f"{n.id}: {n.op}")
            lines.append(f'    b{i + 1}_{n.id} [label="{label}\\n{n.agg}{_attributes(n.attributes())} {n.width}ch"];')
        for e in block.edges:
            text = (f"{e.window[0]}:{e.window[1]}" if e.window else "") + _attributes(e.attributes())
            attr = f' [label="{text.strip()}"]' if text else ""
            lines.append(f"    b{i + 1}_{e.src} -> b{i + 1}_{e.dst}{attr};")
        lines.append("  }")
        if i < len(spec.transitions):
            lines.append(f'  b{i + 1}_{block.output} -> b{i + 2}_0 [label="transition {spec.transitions[i]}ch"];')
    return "\n".join(lines + ["}"])


FORMATS: dict[str, Callable] = {"text": as_text, "json": as_json, "dot": as_dot, "graphml": as_graphml}
