"""Connectivity patterns: each builds one block's DAG as a networkx graph.

Every pattern returns nodes 0 (input), 1..n (layers), n+1 (output, op `identity`) with
`op`, `agg` and `width` attributes, and edges u -> v (v reads u), optionally windowed.
Register a new pattern with `@register_pattern(name)`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import networkx as nx

from connectome.aggregations import option_names
from connectome.errors import ConfigError, SpecError, unknown_name
from connectome.spec import INPUT_OP, OUTPUT_OP, BlockSpec


@dataclass(frozen=True)
class BlockContext:
    """What a pattern knows about the block it wires."""

    n_layers: int
    in_channels: int
    growth: int
    op: str
    index: int  # block number, from 0
    # Layer ops in turn (layer v runs ops[(v - 1) % len(ops)]), e.g. the decoder's attention and
    # SwiGLU sublayers; empty: every layer runs `op`.
    ops: tuple[str, ...] = ()

    def op_of(self, v: int) -> str:
        """The op of layer v (1-based)."""
        return self.ops[(v - 1) % len(self.ops)] if self.ops else self.op


@dataclass(frozen=True)
class Pattern:
    """A registered pattern and the constraints it puts on the network around it."""

    name: str
    build: Callable[..., nx.DiGraph]
    # Sum-aggregating patterns need the block input to be `growth` channels wide.
    fixed_width: bool = False
    # Layer count comes from the pattern (e.g. a file), not from depth.
    own_depth: bool = False
    # Layer nodes a block of n layers builds, where depth counts a path rather than nodes (fractal).
    layer_nodes: Callable[[int], int] = int


# The image families' patterns (blocks of conv layers) and the decoder's (blocks of sublayers):
# one name may mean different wirings in each (`partial` windows channels there, sublayers here).
PATTERNS: dict[str, Pattern] = {}
DECODER_PATTERNS: dict[str, Pattern] = {}
FAMILY_PATTERNS = {"decoder": DECODER_PATTERNS}


def register_pattern(name: str, registry: dict[str, Pattern] | None = None, **flags: Any) -> Callable:
    """Decorator adding a block-graph builder to a registry (PATTERNS unless one is given)."""

    def add(fn: Callable[..., nx.DiGraph]) -> Callable[..., nx.DiGraph]:
        (PATTERNS if registry is None else registry)[name] = Pattern(name, fn, **flags)
        return fn

    return add


def patterns_of(family: str) -> dict[str, Pattern]:
    """The patterns a family's blocks may use."""
    return FAMILY_PATTERNS.get(family, PATTERNS)


def get_pattern(name: str, family: str = "densenet") -> Pattern:
    """The registered pattern of the family, or a ConfigError listing the known ones."""
    known = patterns_of(family)
    if name not in known:
        what = "decoder pattern" if known is DECODER_PATTERNS else "pattern"
        hint = " (a decoder pattern: set family decoder)" if name in DECODER_PATTERNS and family != "decoder" else ""
        raise ConfigError(unknown_name(what, name, known) + hint)
    return known[name]


def block_graph(name: str, ctx: BlockContext, family: str = "densenet", **options: Any) -> nx.DiGraph:
    """Build one block's graph with the named pattern of the family."""
    pattern = get_pattern(name, family)
    try:
        return pattern.build(ctx, **options)
    except TypeError as err:
        raise ConfigError(f"pattern {name!r}: bad pattern_options {options}: {err}") from err


def empty_block(ctx: BlockContext, agg: str = "concat", n_layers: int | None = None) -> nx.DiGraph:
    """Nodes of a block without edges: input, n layers of width growth, output."""
    n = ctx.n_layers if n_layers is None else n_layers
    g = nx.DiGraph()
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    for v in range(1, n + 1):
        g.add_node(v, op=ctx.op_of(v), agg=agg, width=ctx.growth)
    g.add_node(n + 1, op=OUTPUT_OP, agg=agg, width=0)
    return g


@register_pattern("plain")
def plain(ctx: BlockContext) -> nx.DiGraph:
    """A chain: each layer reads only the previous one; the block outputs the last layer."""
    g = empty_block(ctx)
    nx.add_path(g, range(ctx.n_layers + 2))
    return g


@register_pattern("dense")
def dense(ctx: BlockContext) -> nx.DiGraph:
    """DenseNet: every node reads the concatenation of all earlier nodes."""
    g = empty_block(ctx)
    g.add_edges_from((u, v) for v in range(1, ctx.n_layers + 2) for u in range(v))
    return g


@register_pattern("residual", fixed_width=True)
def residual(ctx: BlockContext) -> nx.DiGraph:
    """Pre-activation ResNet: each layer reads the running sum x0 + f1 + ... of earlier nodes."""
    g = dense(ctx)
    for v in range(1, ctx.n_layers + 2):
        g.nodes[v]["agg"] = "sum"
    return g


@register_pattern("residual-postact", fixed_width=True)
def residual_postact(ctx: BlockContext) -> nx.DiGraph:
    """Post-activation ResNet (He et al. 2015): x_j = relu(x_{j-1} + f_j(x_{j-1})).

    Each unit is two nodes: the branch f_j (the block's op) and a join that sums the
    branch with the unit's input and applies a ReLU (op `relu`, agg `sum`). The shortcut
    carries the activated x_{j-1}, which a running sum (pattern `residual`) cannot express.
    """
    g = nx.DiGraph()
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    prev = 0
    for j in range(1, ctx.n_layers + 1):
        branch, join = 2 * j - 1, 2 * j
        g.add_node(branch, op=ctx.op, agg="concat", width=ctx.growth)
        g.add_node(join, op="relu", agg="sum", width=ctx.growth)
        g.add_edges_from([(prev, branch), (prev, join), (branch, join)])
        prev = join
    g.add_node(prev + 1, op=OUTPUT_OP, agg="concat", width=0)
    g.add_edge(prev, prev + 1)
    return g


@register_pattern("highway", fixed_width=True)
def highway(ctx: BlockContext, gate_bias: float = -2.0, gate_kernel: int = 3) -> nx.DiGraph:
    """Highway layers (Srivastava et al. 2015): y_j = T(x) * H(x) + (1 - T(x)) * x, x = y_{j-1}.

    Each layer is two nodes: H, the block's op reading x, and a `gated` join (op identity) reading
    x as its carry and H; the gate's kernel and initial bias are the join's options (their defaults
    as the wiring language's: a 3x3 gate, bias -2). The block outputs the last join.
    """
    g = nx.DiGraph()
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    prev = 0
    for j in range(1, ctx.n_layers + 1):
        h, join = 2 * j - 1, 2 * j
        g.add_node(h, op=ctx.op, agg="concat", width=ctx.growth)
        g.add_node(join, op=OUTPUT_OP, agg="gated", width=0, gate_bias=gate_bias, gate_kernel=gate_kernel)
        g.add_edges_from([(prev, h), (prev, join, {"carry": True}), (h, join)])
        prev = join
    g.add_node(prev + 1, op=OUTPUT_OP, agg="concat", width=0)
    g.add_edge(prev, prev + 1)
    return g


def fractal_layer_nodes(n: int) -> int:
    """Layers of a fractal block whose deepest column is n layers long (2^C - 1 when n = 2^(C-1))."""
    columns = max(n, 1).bit_length()
    return sum(len(_fractal_met(d, columns)) for d in range(1, n + 1))


def _fractal_met(d: int, columns: int) -> list[int]:
    """The columns (0 = shallowest) with a layer at depth d."""
    return [c for c in range(columns) if d % 2 ** (columns - 1 - c) == 0]


@register_pattern("fractal", layer_nodes=fractal_layer_nodes)
def fractal(ctx: BlockContext, drop: float = 0.0, global_drop: float = 0.0) -> nx.DiGraph:
    """FractalNet's block (Larsson et al. 2016): C columns, the deepest n_layers = 2^(C-1) layers long.

    Column c (1 = shallowest) has a layer at the depths d (1..n) that 2^(C-c) divides; the layers at
    one depth read their columns' current maps, and a `mean` join (op identity) averages them and
    feeds every column that met there, so joins are flattened as in the paper's Figure 1 (a join
    of 3 inputs where 3 columns meet). The last join is the block output. Each join input carries
    its column label and the local drop-path probability `drop` (at least one input survives);
    `global_drop` is the share of batches that instead keep one column for the whole network.
    Another n is the fractal of C = floor(log2 n) + 1 columns truncated after n depths. Depth counts
    the deepest column, as the paper does; the block has fractal_layer_nodes(n) layer nodes.
    """
    columns = max(ctx.n_layers, 1).bit_length()
    g = nx.DiGraph(**({"global_drop": global_drop} if global_drop else {}))
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    current = [0] * columns  # each column's latest map
    for d in range(1, ctx.n_layers + 1):
        met = _fractal_met(d, columns)
        layers = [len(g) + i for i in range(len(met))]
        for c, v in zip(met, layers):
            g.add_node(v, op=ctx.op, agg="concat", width=ctx.growth)
            g.add_edge(current[c], v)
        joined = layers[-1]
        if len(met) > 1:
            joined = len(g)
            g.add_node(joined, op=OUTPUT_OP, agg="mean", width=0)
            g.add_edges_from((v, joined, {"column": c + 1, "drop": drop}) for c, v in zip(met, layers))
        for c in met:
            current[c] = joined
    if g.nodes[len(g) - 1]["op"] != OUTPUT_OP:  # the last depth had one layer (or none): an output reads it
        g.add_node(len(g), op=OUTPUT_OP, agg="concat", width=0)
        g.add_edge(current[-1], len(g) - 1)
    return g


@register_pattern("partial")
def partial(ctx: BlockContext, m: int | None = None) -> nx.DiGraph:
    """The partial DenseNet of arXiv 1608.06993 v1, Sec. 5: each layer reads the m latest channels.

    The paper says only that "for each layer only feature maps from the m closest preceding
    feature maps remain as inputs", with m the block's initial number of feature maps
    (16, 160, 304 for L=40, k=12). What it leaves open, and what connectome chose:
    - m counts feature maps (channels), not layers, over the concatenation
      [x0, x1, ..., x_{l-1}] (oldest first), so the oldest source read may contribute only
      part of its channels; connectome reads its LAST channels (an edge window), the ones
      nearest the newer maps in concatenation order. Channel order inside one source has
      no temporal meaning, so this is a convention, not the paper's statement.
    - Transitions and the classifier are not restricted: the block output concatenates
      every layer and the block input, as in the dense block, so they read everything
      (the paper's remark that smaller m "would render some outputs of the transition
      layer inaccessible" implies the restriction applies inside blocks only).
    m defaults to the block's input width; set it per block with m=[...].
    """
    m = ctx.in_channels if m is None else m
    g = empty_block(ctx)
    widths = {v: g.nodes[v]["width"] for v in g.nodes}
    largest = ctx.in_channels + (ctx.n_layers - 1) * ctx.growth
    if ctx.n_layers and not 1 <= m <= largest:  # a block of no layers (an EfficientNet stage of 1 unit): no window
        raise SpecError(
            f"partial block {ctx.index + 1}: m={m} is impossible; it must be between 1 and the "
            f"largest state a layer sees ({ctx.in_channels} + {ctx.n_layers - 1}*{ctx.growth} = {largest}) "
            "(use pattern 'dense' to read everything)"
        )
    for v in range(1, ctx.n_layers + 1):
        _add_recent_window(g, v, m, widths)
    g.add_edges_from((u, ctx.n_layers + 1) for u in range(ctx.n_layers + 1))
    return g


def _add_recent_window(g: nx.DiGraph, v: int, m: int, widths: dict[int, int]) -> None:
    """Edges into v covering the last m channels of [x0, ..., x_{v-1}]."""
    left = m
    for u in range(v - 1, -1, -1):
        take = min(left, widths[u])
        window = None if take == widths[u] else (widths[u] - take, widths[u])
        g.add_edge(u, v, **({} if window is None else {"window": window}))
        left -= take
        if left == 0:
            break


@register_pattern("sparse")
def sparse(ctx: BlockContext, base: int = 2) -> nx.DiGraph:
    """SparseNet: node v reads nodes at exponential offsets v-1, v-base, v-base^2, ..."""
    if base < 2:
        raise SpecError(f"sparse pattern needs base >= 2, got {base}")
    g = empty_block(ctx)
    for v in range(1, ctx.n_layers + 2):
        offset = 1
        while v - offset >= 0:
            g.add_edge(v - offset, v)
            offset *= base
    return g


@register_pattern("span")
def span(ctx: BlockContext, max_span: int | None = None) -> nx.DiGraph:
    """Dense wiring cut by reach: layer v reads node u only if v - u <= max_span (None: no limit).

    Generalises the paper's partial experiment (arXiv 1608.06993 v1, Sec. 5) from channels to
    layers, so retraining over max_span = 1, 2, 4, ... draws a curve from a chain to the dense
    block. As in `partial`, the rule applies inside the block only: the block output still
    concatenates every node, so transitions read everything. Span 1 is always kept, so every
    layer is reachable from the block input, and max_span >= n_layers is the dense block.
    """
    if max_span is not None and (isinstance(max_span, bool) or not isinstance(max_span, int) or max_span < 1):
        raise SpecError(f"span block {ctx.index + 1}: max_span must be a whole number of layers >= 1 "
                        f"(or null for no limit, the dense block), got {max_span!r}")
    g = dense(ctx)
    if max_span is not None:
        g.remove_edges_from([(u, v) for u, v in g.edges if v <= ctx.n_layers and v - u > max_span])
    return g


RANDOM_MODELS: dict[str, Callable[..., nx.Graph]] = {
    "er": lambda n, p=0.2, seed=0, **_: nx.erdos_renyi_graph(n, p, seed=seed),
    "ws": lambda n, k=4, p=0.25, seed=0, **_: nx.watts_strogatz_graph(n, min(k, n - 1), p, seed=seed),
    "ba": lambda n, m=2, seed=0, **_: nx.barabasi_albert_graph(n, min(m, n - 1), seed=seed),
}


@register_pattern("random")
def random_graph(ctx: BlockContext, model: str = "ws", seed: int = 0, **params: Any) -> nx.DiGraph:
    """RandWire: a random graph on the layers, oriented by node order, seeded per block.

    Layers with no input read the block input; layers no one reads feed the block output.
    """
    if model not in RANDOM_MODELS:
        raise ConfigError(unknown_name("random graph model", model, RANDOM_MODELS))
    n = ctx.n_layers
    if n < 3 and model != "er":
        raise SpecError(f"random model {model!r} needs at least 3 layers per block, got {n}")
    if model == "ba" and not (isinstance(params.get("m", 2), int) and params.get("m", 2) >= 1):
        raise SpecError(f"random model 'ba' needs an integer m >= 1 (edges per new node), got {params['m']!r}")
    try:
        undirected = RANDOM_MODELS[model](n, seed=seed + 1000 * ctx.index, **params)
    except nx.NetworkXError as err:
        raise SpecError(f"random model {model!r} with {params}: {err}") from None
    g = empty_block(ctx)
    g.add_edges_from((min(u, v) + 1, max(u, v) + 1) for u, v in undirected.edges)
    _attach_ends(g, n)
    return g


def _attach_ends(g: nx.DiGraph, n: int) -> None:
    """Connect sourceless layers to the input and sinkless layers to the output."""
    for v in range(1, n + 1):
        if g.in_degree(v) == 0:
            g.add_edge(0, v)
    for v in range(1, n + 1):
        if g.out_degree(v) == 0:
            g.add_edge(v, n + 1)
    if n == 0:
        g.add_edge(0, 1)


@register_pattern("file", own_depth=True)
def from_file(ctx: BlockContext, path: str | list[str]) -> nx.DiGraph:
    """A user's DAG from GraphML or node-link JSON (one file, or one per block).

    Nodes are 0 (input) and 1..n (layers); node attributes `agg`, `op`, `width`, `drop` and the
    aggregation kinds' options (`weights`, `gate_kernel`, `gate_bias`), a named port's `p.agg` and
    `p.<option>`, edge attributes `window` ("lo:hi"), `drop`, `column`, `carry`, `port` (the input
    port it feeds) and `out` (the output it reads; a multigraph may join a pair once per port), and
    the graph attribute `global_drop` are optional
    (docs/design.md, "The wiring language"). A width on node 0 fixes the block's input width
    (the network's stem or transition then matches it). The output node n+1 is added, reading
    every layer that no other layer reads, unless the file already has a node with op identity.
    """
    if isinstance(path, list):
        if ctx.index >= len(path):
            raise ConfigError(f"pattern 'file' has {len(path)} paths but the network has more blocks")
        path = path[ctx.index]
    user = read_graph(Path(path))
    try:
        graph = _complete_user_graph(user, ctx)
        BlockSpec.from_graph(graph)  # validated here too, so an error names the file
        return graph
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None


# The largest graph file read: a dense block of 1,000 layers (the default `limits.depth`) is about
# 20 MB of node-link JSON; a multi-GB file used many GB of memory before its error.
MAX_GRAPH_FILE_BYTES = 64 * 2**20


def read_graph(path: Path) -> nx.DiGraph:
    """Read GraphML or node-link JSON into a DiGraph with integer node ids (size checked before parsing)."""
    check_graph_file(path)
    try:
        if path.suffix.lower() == ".json":
            graph = nx.node_link_graph(json.loads(path.read_text()), directed=True, edges="links")
        else:
            graph = nx.read_graphml(path)
        kind = nx.MultiDiGraph if graph.is_multigraph() else nx.DiGraph  # named ports may join a pair twice
        return nx.relabel_nodes(kind(graph), int)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read graph file {path}: {err} (need integer node ids)") from err
    except Exception as err:  # the XML parser raises its own types
        raise ConfigError(f"cannot read graph file {path}: {err}") from err


def check_graph_file(path: Path) -> None:
    """ConfigError unless `path` is a regular file of at most MAX_GRAPH_FILE_BYTES (nothing is read)."""
    if not path.exists():
        raise ConfigError(f"graph file {path} does not exist")
    if not path.is_file():  # a directory, a FIFO (reading it would block), a device
        raise ConfigError(f"graph file {path} is not a regular file")
    size = path.stat().st_size
    if size > MAX_GRAPH_FILE_BYTES:
        raise ConfigError(f"graph file {path} is {size:,} bytes, over the {MAX_GRAPH_FILE_BYTES:,} a graph file may "
                          "have (a dense block of 1,000 layers is about 20 MB)")


def _complete_user_graph(user: nx.DiGraph, ctx: BlockContext) -> nx.DiGraph:
    """Fill default attributes, parse windows, and add the output node if missing."""
    if sorted(user.nodes) != list(range(len(user))):
        raise SpecError(f"graph file nodes must be the integers 0..N, got {sorted(user.nodes)[:10]}")
    has_output = any(d.get("op") == OUTPUT_OP for _, d in user.nodes(data=True))
    n = len(user) - (2 if has_output else 1)
    g = empty_block(ctx, n_layers=n)
    if user.is_multigraph():
        g = nx.MultiDiGraph(g)
    g.graph.update({k: user.graph[k] for k in GRAPH_KEYS if k in user.graph})
    for v, data in user.nodes(data=True):
        g.nodes[v].update({k: data[k] for k in data if k in NODE_KEYS or _port_key(k)})
        if "width" in data:
            g.nodes[v]["width"] = _whole(data["width"], f"node {v} width")
    for u, v, data in user.edges(data=True):
        attrs = {k: data[k] for k in EDGE_KEYS if k in data}
        window = _window(data.get("window"), f"edge {u}->{v} window")
        g.add_edge(u, v, **attrs, **({} if window is None else {"window": window}))
    if not has_output:
        for v in range(n + 1):
            if g.out_degree(v) == 0:
                g.add_edge(v, n + 1)
    return g


# What a graph file may say beyond node widths and edge windows (the wiring language's attributes);
# a node's named input port p also takes `p.agg` and `p.<option>`.
NODE_KEYS = ("op", "agg", "drop", *sorted(option_names()))
EDGE_KEYS = ("drop", "column", "carry", "port", "out")
GRAPH_KEYS = ("global_drop",)


def _port_key(key: str) -> bool:
    """A named port's attribute: `port.agg` or `port.<option>`."""
    port, _, rest = key.partition(".")
    return bool(port) and (rest == "agg" or rest in option_names())


def _whole(value: Any, what: str) -> int:
    """A graph file's integer attribute (GraphML may store it as text); SpecError otherwise."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise SpecError(f"{what} must be a whole number of channels, got {value!r}")


def _window(value: Any, what: str) -> tuple[int, int] | None:
    """An edge window from 'lo:hi' or [lo, hi]; SpecError unless it is two whole numbers."""
    if value is None:
        return None
    parts = value.split(":") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise SpecError(f"{what} must be 'lo:hi' (two channel indices), got {value!r}")
    return _whole(parts[0], what), _whole(parts[1], what)


# The decoder's patterns: layers are sublayers (attention, SwiGLU, attention, ...) of one width;
# node 0 is the token embedding. docs/design.md, "The decoder family", says what each node reads.
register_pattern("prenorm", DECODER_PATTERNS, fixed_width=True)(residual)
register_pattern("plain", DECODER_PATTERNS, fixed_width=True)(plain)
register_pattern("dense-concat", DECODER_PATTERNS)(dense)
# A user's sublayer DAG (unlabelled layers alternate attention and SwiGLU); named ports and outputs
# make MUDD-like and value-residual wirings files (examples/graphs/).
register_pattern("file", DECODER_PATTERNS, fixed_width=True, own_depth=True)(from_file)


@register_pattern("partial", DECODER_PATTERNS, fixed_width=True)
def partial_stream(ctx: BlockContext, m: int = 2) -> nx.DiGraph:
    """A residual stream that keeps only the m most recent outputs (the embedding counts as output 0).

    Sublayer v reads the sum of nodes max(0, v - m) .. v - 1, the output the last m nodes; m >= n is
    `prenorm`, m = 1 is `plain`.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise SpecError(f"decoder pattern 'partial': m must be a whole number of sublayer outputs >= 1, got {m!r}")
    g = empty_block(ctx, agg="sum")
    for v in range(1, ctx.n_layers + 2):
        g.add_edges_from((u, v) for u in range(max(0, v - m), v))
    return g


@register_pattern("denseformer", DECODER_PATTERNS, fixed_width=True)
def denseformer(ctx: BlockContext, dilation: int = 1, period: int = 1) -> nx.DiGraph:
    """DenseFormer (Pagliardini et al. 2024): prenorm blocks, each followed by a depth-weighted average.

    Block i (an attention + SwiGLU pair, residual inside) reads X_{i-1} and outputs
    Y_i = X_{i-1} + a_i + f_i; then X_i = sum_j alpha_ij Y_j over Y_0 (the embedding) and every
    Y_j with (i - j) divisible by `dilation`, a `weighted` node started one-hot on Y_i (`nearest`),
    so the network starts as prenorm. With `period` p the average follows blocks p, 2p, ... only
    (elsewhere X_i = Y_i); the block output is X_n, so it is an average only when p divides n.
    """
    for key, value in (("dilation", dilation), ("period", period)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"decoder pattern 'denseformer': {key} must be a whole number >= 1, got {value!r}")
    if ctx.n_layers % 2:
        raise SpecError(f"decoder pattern 'denseformer' pairs attention and MLP sublayers: sublayers must be "
                        f"even, got {ctx.n_layers}")
    g = nx.DiGraph()
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    x, outputs, v = 0, [0], 0  # X_{i-1}, Y_0..Y_{i-1}, last node id
    pairs = ctx.n_layers // 2
    for i in range(1, pairs + 1):
        a, f, y = v + 1, v + 2, v + 3
        g.add_node(a, op=ctx.op_of(2 * i - 1), agg="sum", width=ctx.growth)
        g.add_node(f, op=ctx.op_of(2 * i), agg="sum", width=ctx.growth)
        g.add_node(y, op=OUTPUT_OP, agg="sum", width=0)
        g.add_edges_from([(x, a), (x, f), (a, f), (x, y), (a, y), (f, y)])
        outputs.append(y)
        x = v = y
        if i % period == 0:  # the depth-weighted average after block i
            v += 1
            g.add_node(v, op=OUTPUT_OP, agg="weighted", weights="nearest", width=0)
            g.add_edges_from((outputs[j], v) for j in range(i + 1) if (i - j) % dilation == 0)
            x = v
    if g.nodes[v]["agg"] == "sum":  # Y_n is not averaged: a plain output node reads it
        g.add_node(v + 1, op=OUTPUT_OP, agg="sum", width=0)
        g.add_edge(v, v + 1)
    return g


@register_pattern("value-residual", DECODER_PATTERNS, fixed_width=True)
def value_residual(ctx: BlockContext, learned: bool = False) -> nx.MultiDiGraph:
    """Value residual learning (ResFormer, Zhou et al. 2024): prenorm, and every later attention mixes its values
    V_n with the first attention's values V_1 before attending: V'_n = lambda_1 V_1 + lambda_2 V_n.

    Each later attention node's `values` port reads the first attention's output `v` (edge attribute
    out: v). The paper's ResFormer fixes lambda_1 = lambda_2 = 0.5 (`mean`); `learned` makes them two
    learned scalars starting at 0.5 (`weighted`, weights uniform). V_1 is the first layer's projected
    values, as in the paper (not detached: gradients reach layer 1 through every later layer).
    """
    if not isinstance(learned, bool):
        raise SpecError(f"decoder pattern 'value-residual': learned must be true or false, got {learned!r}")
    g = nx.MultiDiGraph(residual(ctx))
    attentions = [v for v in range(1, ctx.n_layers + 1) if ctx.op_of(v) == "attention"]
    mix = {"values.agg": "weighted", "values.weights": "uniform"} if learned else {"values.agg": "mean"}
    for v in attentions[1:]:
        g.nodes[v].update(mix)
        g.add_edge(attentions[0], v, out="v", port="values")
    return g


def _pairs(name: str, ctx: BlockContext) -> int:
    """The attention + MLP pairs of a decoder block (a SpecError for an odd sublayer count)."""
    if ctx.n_layers % 2:
        raise SpecError(f"decoder pattern {name!r} pairs attention and MLP sublayers: sublayers must be even, "
                        f"got {ctx.n_layers}")
    return ctx.n_layers // 2


@register_pattern("muddformer", DECODER_PATTERNS, fixed_width=True)
def muddformer(ctx: BlockContext, dynamic: bool = True, expand: float = 1.0, ports: str = "qkvr") -> nx.MultiDiGraph:
    """MUDDFormer (Xiao et al. 2025): the q, k, v and residual inputs of every block are separate dense
    aggregations of the embedding X_0 and all earlier block outputs X_1 .. X_{i-1}.

    Block i: attention a_i with ports q, k, v (each RMS-normed) and r (added to its output); the MLP
    f_i reads a_i; X_i (an identity node) = a_i + f_i. Block 1 reads X_0 (no aggregation yet, as the
    official code). The head reads one more aggregation of X_0 .. X_n. `dynamic`: per-token weights
    (`mudd`, MLP hidden `expand` x sources); otherwise static learned scalars (`weighted`). Both start
    one-hot on X_{i-1}, so the network starts as prenorm. `ports` (the official config's `dense_type`,
    default qkvr): the inputs that get dense aggregations; the others read X_{i-1} alone, as in prenorm.
    """
    if not isinstance(dynamic, bool):
        raise SpecError(f"decoder pattern 'muddformer': dynamic must be true or false, got {dynamic!r}")
    if not isinstance(ports, str) or not ports or set(ports) - set("qkvr") or len(set(ports)) != len(ports):
        raise SpecError(f"decoder pattern 'muddformer': ports must name each of q, k, v, r at most once and at "
                        f"least one of them (e.g. qkvr, r, qkv), got {ports!r}")
    kind = {"agg": "mudd", "expand": expand} if dynamic else {"agg": "weighted", "weights": "nearest"}
    g = nx.MultiDiGraph()
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    outputs = [0]
    for i in range(1, _pairs("muddformer", ctx) + 1):
        a, f, x = len(g), len(g) + 1, len(g) + 2
        ported = {f"{p}.{k}": value for p in ports for k, value in kind.items()} if i > 1 else {}
        g.add_node(a, op=ctx.op_of(1), agg="sum", width=ctx.growth, **ported)
        g.add_node(f, op=ctx.op_of(2), agg="sum", width=ctx.growth)
        g.add_node(x, op=OUTPUT_OP, agg="sum", width=0)
        if i == 1:  # X_1 = X_0 + a_1 + f_1, f_1 reading X_0 + a_1
            g.add_edges_from([(0, a), (0, f), (a, f), (0, x), (a, x), (f, x)])
        else:
            g.add_edges_from((u, a, {"port": p}) for p in "qkvr" for u in (outputs if p in ports else outputs[-1:]))
            g.add_edges_from([(a, f), (a, x), (f, x)])
        outputs.append(x)
    g.add_node(len(g), op=OUTPUT_OP, width=0, **kind)
    g.add_edges_from((u, len(g) - 1) for u in outputs)
    return g


@register_pattern("attnres", DECODER_PATTERNS, fixed_width=True)
def attention_residuals(ctx: BlockContext, block: int = 0) -> nx.DiGraph:
    """Attention Residuals (Kimi 2026): each sublayer reads a softmax attention over earlier outputs
    (`depth-attention`: a learned query per sublayer, RMS-normed keys) instead of their sum.

    Full form (block 0): sublayer v attends over x0, f_1 .. f_{v-1}; the head over all. Block form
    (block S): the sublayers form groups of S; a group's outputs are summed into one representation
    b_k (b_0 = x0), and sublayer v attends over b_0 .. b_{k-1} and the sum of its own group's earlier
    outputs (when there are any); the head over every b_k. A single source is read as it is.
    """
    if isinstance(block, bool) or not isinstance(block, int) or block < 0:
        raise SpecError(f"decoder pattern 'attnres': block must be a whole number of sublayers >= 0 "
                        f"(0: the full form), got {block!r}")
    g = nx.DiGraph()
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    done, group = [0], []  # completed representations (b_k, or single outputs), the current group's outputs
    for v in range(1, ctx.n_layers + 1):
        sources = done + ([_group_sum(g, group)] if group else [])
        node = len(g)
        g.add_node(node, op=ctx.op_of(v), agg="depth-attention" if len(sources) > 1 else "sum", width=ctx.growth)
        g.add_edges_from((u, node) for u in sources)
        group.append(node)
        if block == 0 or len(group) == block:
            done.append(_group_sum(g, group))
            group = []
    if group:
        done.append(_group_sum(g, group))
    g.add_node(len(g), op=OUTPUT_OP, agg="depth-attention" if len(done) > 1 else "sum", width=0)
    g.add_edges_from((u, len(g) - 1) for u in done)
    return g


def _group_sum(g: nx.DiGraph, group: list[int]) -> int:
    """A node summing a group of sublayer outputs (the output itself when the group has one)."""
    if len(group) == 1:
        return group[0]
    node = len(g)
    g.add_node(node, op=OUTPUT_OP, agg="sum", width=0)
    g.add_edges_from((u, node) for u in group)
    return node


@register_pattern("laurel", DECODER_PATTERNS, fixed_width=True)
def laurel(ctx: BlockContext, form: str = "rw+lr", rank: int = 4) -> nx.DiGraph:
    """LAuReL (Menghani et al. 2025): every residual addition x_v = x_{v-1} + f_v becomes a `laurel` join
    x_v = alpha f_v + beta (x_{v-1} + B A x_{v-1}) (form rw, lr or rw+lr; rank r of B A).

    Sublayer v reads the stream x_{v-1}; the join (op identity) reads x_{v-1} as its carry and f_v.
    It starts as prenorm (alpha = beta = 1, B = 0).
    """
    g = nx.DiGraph()
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    stream = 0
    for v in range(1, ctx.n_layers + 1):
        f, join = len(g), len(g) + 1
        g.add_node(f, op=ctx.op_of(v), agg="sum", width=ctx.growth)
        g.add_node(join, op=OUTPUT_OP, agg="laurel", width=0, form=form, rank=rank)
        g.add_edges_from([(stream, f), (stream, join, {"carry": True}), (f, join)])
        stream = join
    g.add_node(len(g), op=OUTPUT_OP, agg="sum", width=0)
    g.add_edge(stream, len(g) - 1)
    return g


def _multi_stream(ctx: BlockContext, name: str, streams: int, dynamic: bool, mixing: str) -> nx.DiGraph:
    """n streams opened from the embedding; each sublayer reads them (`hc-read`) and is written back
    (`hc-write`); the head reads their sum. The stream state nodes are n x width wide."""
    if not isinstance(dynamic, bool):
        raise SpecError(f"decoder pattern {name!r}: dynamic must be true or false, got {dynamic!r}")
    kind = {"streams": streams, "mode": "dynamic" if dynamic else "static", "mixing": mixing}
    g = nx.DiGraph()
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    g.add_node(1, op=OUTPUT_OP, agg="streams", width=0, streams=streams)
    g.add_edge(0, 1)
    n = streams if isinstance(streams, int) and streams > 0 else 1
    state = _read_write_layers(g, ctx, 1, lambda v: {"agg": "hc-read", "start": (v - 1) % n, **kind},
                               {"agg": "hc-write", **kind})
    g.add_node(len(g), op=OUTPUT_OP, agg="stream-sum", width=0, streams=streams)
    g.add_edge(state, len(g) - 1)
    return g


def _read_write_layers(g: nx.DiGraph, ctx: BlockContext, state: int, read: Callable[[int], dict],
                       write: dict) -> int:
    """Sublayer v reads the state through a node of attributes read(v); a `write` node makes the next
    state from the state and the sublayer's output. Returns the last state node."""
    for v in range(1, ctx.n_layers + 1):
        f, written = len(g), len(g) + 1
        g.add_node(f, op=ctx.op_of(v), width=ctx.growth, **read(v))
        g.add_node(written, op=OUTPUT_OP, width=0, **write)
        g.add_edges_from([(state, f), (state, written), (f, written)])
        state = written
    return state


@register_pattern("hyper-connections", DECODER_PATTERNS, fixed_width=True)
def hyper_connections(ctx: BlockContext, streams: int = 4, dynamic: bool = True) -> nx.DiGraph:
    """Hyper-Connections (Zhu et al. 2025): n residual streams; sublayer l reads sum_i A_m[i] H_i and the
    streams become H'_j = B_j f_l + sum_i A_r[i, j] H_i (`dynamic`: per-token A_m, A_r, B from each
    normed stream). Starts as prenorm: every stream starts as the embedding, A_m one-hot on stream
    (l - 1) mod n, A_r = I, B = 1, dynamic projections zero."""
    return _multi_stream(ctx, "hyper-connections", streams, dynamic, "hc")


MHC_HEADS = ("sum", "learned")


@register_pattern("mhc", DECODER_PATTERNS, fixed_width=True)
def manifold_hyper_connections(ctx: BlockContext, streams: int = 4, dynamic: bool = True,
                               head: str = "sum") -> nx.DiGraph:
    """mHC (Xie et al. 2025, DeepSeek): Hyper-Connections whose stream mixing A_r is projected onto the doubly
    stochastic matrices (Sinkhorn), A_m = sigmoid(.), B = 2 sigmoid(.), dynamic parts from the whole
    flattened, RMS-normed state. Starts as prenorm (A_m = 1/n, A_r = 1/n, B = 1, projections zero).

    `head`: the head reads the sum of the streams (`sum`, as Hyper-Connections), or, as DeepSeek's
    reference code (TileKernels' mhc_head), one more learned read sum_i sigmoid(.)_i H_i (`learned`: an
    `hc-read`, starting at the mean of the streams).
    """
    if head not in MHC_HEADS:
        raise SpecError(f"decoder pattern 'mhc': head must be one of {', '.join(MHC_HEADS)}, got {head!r}")
    g = _multi_stream(ctx, "mhc", streams, dynamic, "mhc")
    if head == "learned":  # the closing stream-sum becomes a read with the sublayers' options
        read = next(d for _, d in g.nodes(data=True) if d.get("agg") == "hc-read")
        g.nodes[len(g) - 1].update(agg="hc-read", start=0, mode=read["mode"], mixing="mhc")
    return g


@register_pattern("frac-connections", DECODER_PATTERNS, fixed_width=True)
def frac_connections(ctx: BlockContext, fractions: int = 2, dynamic: bool = True) -> nx.DiGraph:
    """Frac-Connections (Zhu et al. 2025, arXiv 2503.14125): the state is m fractions of width d/m; sublayer l
    reads Y^T H (`frac-read`, fractions side by side) and the state becomes H'_j = B_j y_j + sum_i A_r[i, j] H_i
    (`frac-write`, y_j fraction j of its output; `dynamic`: per-token Y, A_r, B from each normed fraction).
    The head reads the state. Starts as prenorm: Y = I, A_r = I, B = 1, dynamic projections zero."""
    if not isinstance(dynamic, bool):
        raise SpecError(f"decoder pattern 'frac-connections': dynamic must be true or false, got {dynamic!r}")
    kind = {"fractions": fractions, "mode": "dynamic" if dynamic else "static"}
    g = nx.DiGraph()
    g.add_node(0, op=INPUT_OP, agg="concat", width=ctx.in_channels)
    state = _read_write_layers(g, ctx, 0, lambda v: {"agg": "frac-read", **kind}, {"agg": "frac-write", **kind})
    g.add_node(len(g), op=OUTPUT_OP, agg="sum", width=0)
    g.add_edge(state, len(g) - 1)
    return g
