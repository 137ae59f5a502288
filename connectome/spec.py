"""The immutable network spec: block DAGs frozen from networkx graphs, validated, hashable.

A block graph has integer nodes: 0 is the block input, 1..n are layers and n+1 is the
block output (op `identity`). An edge u -> v means v reads u's output, all of it or the
channel window `(lo, hi)`. A node combines its in-edges with an aggregation kind
(connectome.aggregations); nodes and edges may be dropped at random in training (the wiring
language, docs/design.md). The spec describes an architecture; it executes nothing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any

import networkx as nx

from connectome.aggregations import AGGREGATIONS, Aggregation, get_aggregation
from connectome.costs import OP_KINDS, Ports
from connectome.errors import SpecError, unknown_name

INPUT_OP, OUTPUT_OP = "input", "identity"
# Parameter-free ops that join branches (post-activation ResNets, mean/gated joins inside a block);
# not counted as layers.
JOIN_OPS = frozenset({"relu", OUTPUT_OP})


@dataclass(frozen=True)
class Edge:
    """v reads channels lo:hi of u (window None: all of u); it may be dropped in training."""

    src: int
    dst: int
    window: tuple[int, int] | None = None
    drop: float = 0.0  # probability that a training batch drops this edge (the kind's drop rule)
    column: int = 0  # FractalNet column label for global drop-path (0: none)
    carry: bool = False  # the carry input x of a gated node
    port: str = ""  # the named input port of v it feeds ("": v's default input)
    out: str = ""  # the named output of u it reads ("": u's output)

    def attributes(self) -> dict:
        """The wiring attributes that differ from their defaults (what files and hashes carry)."""
        pairs = (("drop", self.drop), ("column", self.column), ("carry", self.carry), ("port", self.port),
                 ("out", self.out))
        return {k: v for k, v in pairs if v}


@dataclass(frozen=True)
class Node:
    """One node of a block: its operation, how it aggregates inputs, its output width."""

    id: int
    op: str
    agg: str
    width: int
    drop: float = 0.0  # stochastic depth: probability that a training batch zeroes this node's output
    options: tuple[tuple[str, Any], ...] = ()  # the aggregation kind's options, sorted by name
    # Named input ports with in-edges, sorted: (port, its aggregation kind, the kind's options).
    ports: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...] = ()

    def attributes(self) -> dict:
        """The wiring attributes beyond op/agg/width (drop when set, the kind's options, `port.agg`, `port.option`)."""
        ports = {f"{p}.{k}": v for p, agg, options in self.ports for k, v in (("agg", agg), *options)}
        return {**({"drop": self.drop} if self.drop else {}), **dict(self.options), **ports}

    def port_kind(self, port: str) -> tuple[str, dict[str, Any]]:
        """The aggregation kind and options of an input port ("": the default input)."""
        for p, agg, options in self.ports:
            if p == port:
                return agg, dict(options)
        return self.agg, dict(self.options)


@dataclass(frozen=True)
class BlockSpec:
    """One block's DAG in canonical form (nodes and edges sorted)."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    # Probability that a training batch uses global drop-path: one column label kept (ConnectomeNet draws it).
    global_drop: float = 0.0

    @classmethod
    def from_graph(cls, graph: nx.DiGraph, ops: frozenset[str] | None = None) -> BlockSpec:
        """Validate a block graph and freeze it; widths of identity nodes are derived."""
        _check_structure(graph)
        widths: dict[int, int] = {}
        nodes, edges = [], []
        for v in nx.lexicographical_topological_sort(graph):
            data = graph.nodes[v]
            in_edges = [_edge(graph, u, v, d, widths) for u, d in _in_edges(graph, v)]
            _check_ports(v, data.get("op"), in_edges, graph)
            ports = _node_ports(v, data, in_edges)
            widths[v] = _node_width(v, data, [e for e in in_edges if not e.port], widths)
            _check_port_widths(v, data, ports, in_edges, widths)
            kind = get_aggregation(data.get("agg", "concat"))
            in_edges = _marked_carry(v, kind, in_edges)
            options = kind.resolve_options(data, f"node {v}")
            nodes.append(Node(v, data["op"], kind.name, widths[v], _node_drop(v, data, graph), options, ports))
            edges.extend(in_edges)
        if ops is not None:
            _check_ops(nodes, ops)
        global_drop = _probability(graph.graph.get("global_drop", 0.0), "block attribute global_drop")
        return cls(tuple(sorted(nodes, key=lambda n: n.id)), tuple(sorted(edges, key=_edge_key)), global_drop)

    @property
    def output(self) -> int:
        """Id of the block's output node."""
        return self.nodes[-1].id

    @property
    def n_layers(self) -> int:
        """Number of layer nodes (neither input, output nor a parameter-free join)."""
        return len(self.layer_ids)

    @cached_property
    def layer_ids(self) -> tuple[int, ...]:
        """Ids of the layer nodes, ascending."""
        return tuple(n.id for n in self.nodes[1:-1] if n.op not in JOIN_OPS)

    @property
    def in_channels(self) -> int:
        return self.nodes[0].width

    @property
    def out_channels(self) -> int:
        return self.nodes[-1].width

    @cached_property
    def inputs(self) -> dict[int, tuple[Edge, ...]]:
        """In-edges of every node, sources in ascending id (concatenation order)."""
        table: dict[int, list[Edge]] = {n.id: [] for n in self.nodes}
        for e in self.edges:
            table[e.dst].append(e)
        return {v: tuple(es) for v, es in table.items()}

    def port_inputs(self, v: int) -> dict[str, tuple[Edge, ...]]:
        """Node v's in-edges by input port: the default input ("") first when it has in-edges, then named ports."""
        table: dict[str, list[Edge]] = {}
        for e in sorted(self.inputs[v], key=lambda e: e.port != ""):
            table.setdefault(e.port, []).append(e)
        return {p: tuple(es) for p, es in table.items()}

    def read_width(self, edge: Edge) -> int:
        """Channels an edge carries."""
        if edge.window is None:
            return self.nodes[edge.src].width
        return edge.window[1] - edge.window[0]

    def input_width(self, v: int) -> int:
        """Channels of node v's aggregated input (of its default input, else of its first named port)."""
        port, edges = next(iter(self.port_inputs(v).items()), ("", ()))
        agg, options = self.nodes[v].port_kind(port)
        return AGGREGATIONS[agg].input_width([self.read_width(e) for e in edges], options)

    @cached_property
    def named_output_sources(self) -> frozenset[int]:
        """Nodes some edge reads a named output of (an attention node's values)."""
        return frozenset(e.src for e in self.edges if e.out)

    @property
    def parallel(self) -> bool:
        """Whether two edges join the same pair of nodes (different ports or outputs): a multigraph."""
        return len({(e.src, e.dst) for e in self.edges}) < len(self.edges)

    @property
    def columns(self) -> frozenset[int]:
        """The column labels of the block's edges (global drop-path keeps one per batch)."""
        return frozenset(e.column for e in self.edges if e.column)

    @cached_property
    def canonical_hash(self) -> str:
        """Relabelling-invariant WL hash of the block (see connectome/canonical.py)."""
        from connectome.canonical import block_canonical_hash

        return block_canonical_hash(self)

    def to_graph(self, text_windows: bool = False) -> nx.DiGraph:
        """The block as a networkx DiGraph (a MultiDiGraph where ports join a pair twice) with every attribute
        from_graph reads (windows "lo:hi" if text_windows)."""
        kind = nx.MultiDiGraph if self.parallel else nx.DiGraph
        g = kind(**({"global_drop": self.global_drop} if self.global_drop else {}))
        for n in self.nodes:
            g.add_node(n.id, op=n.op, agg=n.agg, width=n.width, **n.attributes())
        for e in self.edges:
            attrs = e.attributes()
            if e.window is not None:
                attrs["window"] = f"{e.window[0]}:{e.window[1]}" if text_windows else e.window
            g.add_edge(e.src, e.dst, **attrs)
        return g


@dataclass(frozen=True)
class NetworkSpec:
    """A whole network: stem, blocks joined by transitions, classifier head."""

    stem: str
    in_channels: int
    stem_channels: int
    blocks: tuple[BlockSpec, ...]
    transitions: tuple[int, ...]  # output channels of the transition after block i
    classes: int
    growth: int
    bn_size: int = 4
    dropout: float = 0.0
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    # Between blocks: a kind of connectome.costs.TRANSITION_KINDS (DenseNet transition, ResNet stage unit).
    transition: str = "densenet"
    # After the last block: a kind of connectome.costs.HEAD_KINDS.
    head: str = "bn-relu"
    # What the tensors between parts are: "maps" (batch, channels, H, W) or "tokens" (batch, tokens,
    # width); it fixes the dimension the executor slices and concatenates (CHANNEL_DIM).
    layout: str = "maps"
    # Keyword options every layer op and op cost formula of the family takes, sorted by name
    # (the decoder's heads, MLP width, context, sublayer count); none for the image families.
    op_options: tuple[tuple[str, Any], ...] = ()
    # Per block, the dropout of its layer ops (FractalNet's rates by block); empty: `dropout` for all.
    block_dropout: tuple[float, ...] = ()
    # Kinds of the transitions one by one, where they differ (EfficientNet's stage units, RDNet's
    # downsampling rule); empty: every transition is `transition`.
    transition_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.block_dropout and len(self.block_dropout) != len(self.blocks):
            raise SpecError(f"{len(self.blocks)} blocks need {len(self.blocks)} block_dropout rates, "
                            f"got {len(self.block_dropout)}")
        if self.layout not in CHANNEL_DIM:
            raise SpecError(unknown_name("layout", self.layout, CHANNEL_DIM))
        if len(self.transitions) != len(self.blocks) - 1:
            raise SpecError(f"{len(self.blocks)} blocks need {len(self.blocks) - 1} transitions")
        if self.transition_kinds and len(self.transition_kinds) != len(self.transitions):
            raise SpecError(f"{len(self.transitions)} transitions need as many transition_kinds, "
                            f"got {len(self.transition_kinds)}")
        widths = [self.stem_channels, *self.transitions]
        for i, (block, width) in enumerate(zip(self.blocks, widths)):
            if block.in_channels != width:
                raise SpecError(f"block {i + 1} expects {block.in_channels} input channels, gets {width}")

    @property
    def layer_dropout(self) -> tuple[float, ...]:
        """The dropout of each block's layer ops."""
        return self.block_dropout or (self.dropout,) * len(self.blocks)

    def to_dict(self) -> dict:
        """Plain-data form (JSON-ready); `meta` holds provenance and is not hashed."""
        d = asdict(self)
        d["blocks"] = [_block_to_dict(b) for b in self.blocks]
        for key, default in _LATER_FIELDS.items():  # absent at their default: older hashes stay valid
            if d[key] == default:
                del d[key]
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> NetworkSpec:
        blocks = tuple(_block_from_dict(b) for b in d["blocks"])
        rest = {k: v for k, v in d.items() if k != "blocks"}
        rest["transitions"] = tuple(rest["transitions"])
        rest["op_options"] = tuple((k, v) for k, v in rest.get("op_options", ()))
        rest["block_dropout"] = tuple(rest.get("block_dropout", ()))
        rest["transition_kinds"] = tuple(rest.get("transition_kinds", ()))
        return cls(blocks=blocks, **rest)

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        return cls.from_dict(json.loads(text))

    @cached_property
    def graph_hash(self) -> str:
        """Exact hash of the spec (node ids included): equal only for identical specs; see canonical_hash."""
        d = self.to_dict()
        d.pop("meta")
        canon = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    @cached_property
    def canonical_hash(self) -> str:
        """Relabelling-invariant hash (WL; confirm matches with connectome.canonical.CanonicalIndex)."""
        from connectome.canonical import network_canonical_hash

        return network_canonical_hash(self)


    def transition_kind(self, i: int) -> str:
        """The kind of the transition after block i + 1."""
        return self.transition_kinds[i] if self.transition_kinds else self.transition

    @property
    def channel_dim(self) -> int:
        """The tensor dimension that holds channels (the one windows slice and concat joins)."""
        return CHANNEL_DIM[self.layout]


_LATER_FIELDS = {"transition": "densenet", "head": "bn-relu", "layout": "maps", "op_options": (),
                 "block_dropout": (), "transition_kinds": ()}
# Layouts and their channel dimension: images NCHW, token sequences (batch, tokens, width).
CHANNEL_DIM = {"maps": 1, "tokens": -1}


def _edge_key(e: Edge) -> tuple[int, int, str, str]:
    return (e.dst, e.src, e.out, e.port)


def _block_to_dict(b: BlockSpec) -> dict:
    """Plain data; wiring attributes are appended only where set, so older graph hashes stay valid."""
    d = {
        "nodes": [[n.id, n.op, n.agg, n.width, *_extra(n.attributes())] for n in b.nodes],
        "edges": [[e.src, e.dst, list(e.window) if e.window else None, *_extra(e.attributes())] for e in b.edges],
    }
    return {**d, "global_drop": b.global_drop} if b.global_drop else d


def _extra(attributes: dict) -> list[dict]:
    return [attributes] if attributes else []


def _block_from_dict(d: dict) -> BlockSpec:
    nodes = tuple(_node_from_list(*n) for n in d["nodes"])
    edges = tuple(Edge(s, t, tuple(w) if w else None, **(extra[0] if extra else {})) for s, t, w, *extra in d["edges"])
    return BlockSpec(nodes, edges, d.get("global_drop", 0.0))


def _node_from_list(v: int, op: str, agg: str, width: int, extra: dict | None = None) -> Node:
    extra = dict(extra or {})
    drop = extra.pop("drop", 0.0)
    ported = {k: extra.pop(k) for k in [k for k in extra if "." in k]}
    return Node(v, op, agg, width, drop, tuple(sorted(extra.items())), _ports_from_keys(ported))


def _ports_from_keys(keys: dict[str, Any]) -> tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...]:
    """Node.ports from `port.agg` / `port.option` keys (their form in dicts and files)."""
    names = sorted({k.split(".", 1)[0] for k in keys})
    return tuple((p, keys[f"{p}.agg"], tuple(sorted((k.split(".", 1)[1], v) for k, v in keys.items()
                                                    if k.startswith(p + ".") and k != f"{p}.agg")))
                 for p in names)


def _check_structure(graph: nx.DiGraph) -> None:
    """Node ids 0..N, a DAG, input/output at the ends, every layer on an input-output path."""
    ids = sorted(graph.nodes)
    if len(ids) < 2 or ids != list(range(len(ids))):
        raise SpecError(f"block nodes must be the integers 0..N (input 0, output N), got {ids[:10]}")
    if not nx.is_directed_acyclic_graph(graph):
        cycle = " -> ".join(str(u) for u, _ in nx.find_cycle(graph))
        raise SpecError(f"block graph has a cycle: {cycle}")
    first, last = ids[0], ids[-1]
    if graph.in_degree(first):
        raise SpecError("node 0 is the block input and cannot read other nodes")
    if graph.out_degree(last):
        raise SpecError(f"node {last} is the block output and cannot feed other nodes")
    unreachable = sorted(set(ids) - nx.descendants(graph, first) - {first})
    if unreachable:
        raise SpecError(f"layers {unreachable} are unreachable from the block input (node 0)")
    dead = sorted(set(ids) - nx.ancestors(graph, last) - {last})
    if dead:
        raise SpecError(f"layers {dead} never reach the block output (node {last})")


def _in_edges(graph: nx.DiGraph, v: int) -> list[tuple[int, dict]]:
    """(source, attributes) of v's in-edges by ascending source (a MultiDiGraph may join a pair twice)."""
    if not graph.is_multigraph():
        return [(u, graph.edges[u, v]) for u in sorted(graph.predecessors(v))]
    return sorted(((u, d) for u, _, d in graph.in_edges(v, data=True)),
                  key=lambda ud: (ud[0], str(ud[1].get("out", "")), str(ud[1].get("port", ""))))


def _edge(graph: nx.DiGraph, u: int, v: int, data: dict, widths: dict[int, int]) -> Edge:
    """Edge with a validated window and wiring attributes."""
    attrs = {"drop": _probability(data.get("drop", 0.0), f"edge {u}->{v} drop"),
             "column": _column(data.get("column", 0), f"edge {u}->{v} column"),
             "carry": _flag(data.get("carry", False), f"edge {u}->{v} carry"),
             "port": _name(data.get("port", ""), f"edge {u}->{v} port"),
             "out": _name(data.get("out", ""), f"edge {u}->{v} out")}
    window = data.get("window")
    if window is None:
        return Edge(u, v, **attrs)
    lo, hi = (int(x) for x in window)
    if not 0 <= lo < hi <= widths[u]:
        raise SpecError(
            f"edge {u}->{v} reads channels {lo}:{hi} but node {u} has only {widths[u]} channels"
        )
    return Edge(u, v, None if (lo, hi) == (0, widths[u]) else (lo, hi), **attrs)


def _name(value: Any, what: str) -> str:
    """A port name: a word (letters, digits, underscores) or "" (the default)."""
    if not isinstance(value, str) or (value and not value.isidentifier()):
        raise SpecError(f"{what} must be a port name (a word such as q or v), got {value!r}")
    return value


def op_ports(op: str | None) -> Ports:
    """The named ports of an op kind (none for input, identity and unported kinds)."""
    return OP_KINDS.ports.get(op or "", Ports())


def _check_ports(v: int, op: str | None, in_edges: list[Edge], graph: nx.DiGraph) -> None:
    """Every edge feeds a port its target has and reads an output its source has; no drops into ports."""
    inputs = op_ports(op).inputs
    for e in (e for e in in_edges if e.port or e.out):
        outputs = op_ports(graph.nodes[e.src].get("op")).outputs
        if e.out and e.out not in outputs:
            raise SpecError(f"edge {e.src}->{v} out: node {e.src} ({graph.nodes[e.src].get('op')}) has no output "
                            f"{e.out!r}; its outputs: {', '.join(outputs) or 'none named'}")
        if e.port and e.port not in inputs:
            raise SpecError(f"edge {e.src}->{v} port: node {v} ({op}) has no input port {e.port!r}; its ports: "
                            f"{', '.join(inputs) or 'none named'}")
        if e.port and (e.drop or e.column):
            raise SpecError(f"edge {e.src}->{v}: drop and column are not supported on an edge into a named port")


def _node_ports(v: int, data: dict, in_edges: list[Edge]) -> tuple[tuple[str, str, tuple], ...]:
    """Each fed named port's kind (`port.agg`, else the node's agg) and options (`port.option`, else the node's)."""
    fed = sorted({e.port for e in in_edges if e.port})
    named = {k.split(".", 1)[0] for k in data if isinstance(k, str) and "." in k}
    if named - set(fed):
        port = sorted(named - set(fed))[0]
        raise SpecError(f"node {v}: port {port!r} has no in-edges (its attributes name it; an edge with "
                        f"port: {port} must feed it)")
    default = op_ports(data.get("op"))
    if fed and not any(not e.port for e in in_edges):
        missing = [p for p in default.required if p not in fed]
        if missing:
            raise SpecError(f"node {v} ({data.get('op')}): port {missing[0]!r} has no inputs and the node no "
                            f"default input to read instead; feed it (edge attribute port: {missing[0]})")
    ports = []
    for p in fed:
        kind = get_aggregation(data.get(f"{p}.agg", data.get("agg", "concat")), f"node {v} port {p}: ")
        merged = {k: data[f"{p}.{k}"] if f"{p}.{k}" in data else data[k]
                  for k in kind.options if f"{p}.{k}" in data or k in data}
        ports.append((p, kind.name, kind.resolve_options(merged, f"node {v} port {p}")))
    return tuple(ports)


def _check_port_widths(v: int, data: dict, ports: tuple, in_edges: list[Edge], widths: dict[int, int]) -> None:
    """Each named port's inputs against its kind's rules; every port hands the op one width."""
    if not ports:
        return
    if data.get("drop"):
        raise SpecError(f"node {v} drop: stochastic depth is not supported on a node with named ports")
    own = dict(op_ports(data.get("op")).own)
    default = [e for e in in_edges if not e.port]
    node_kind = get_aggregation(data.get("agg", "concat"))
    node_options = dict(node_kind.resolve_options(data, f"node {v}"))
    stream = {node_kind.input_width([_read(e, widths) for e in default], node_options)} if default else set()
    for p, agg, options in ports:
        edges = [e for e in in_edges if e.port == p]
        reads = [_read(e, widths) for e in edges]
        kind = get_aggregation(agg)
        _check_inputs(v, kind, edges, reads, own=p in own, port=p, options=dict(options))
        width = kind.input_width(reads, dict(options))
        if p in own and width != widths[v]:
            raise SpecError(f"node {v} port {p} mixes the node's own {own[p]} ({widths[v]} channels) with "
                            f"{width}-channel inputs")
        if p not in own:
            stream.add(width)
    if len(stream) > 1:
        raise SpecError(f"node {v}: its input ports hand it unequal widths {sorted(stream)}; every port must "
                        "aggregate to one width")


def _read(e: Edge, widths: dict[int, int]) -> int:
    return (e.window[1] - e.window[0]) if e.window else widths[e.src]


def _probability(value: Any, what: str) -> float:
    """A drop probability: a number in [0, 1) (1 would drop always)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise SpecError(f"{what} must be a probability in [0, 1), got {value!r}")
    return float(value)


def _column(value: Any, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{what} must be a whole number >= 0 (a column label; 0: none), got {value!r}")
    return value


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{what} must be true or false, got {value!r}")
    return value


def _node_drop(v: int, data: dict, graph: nx.DiGraph) -> float:
    """A node's drop probability; the block input and output cannot be dropped."""
    drop = _probability(data.get("drop", 0.0), f"node {v} drop")
    if drop and (graph.in_degree(v) == 0 or graph.out_degree(v) == 0):
        raise SpecError(f"node {v} drop: the block input and output cannot be dropped (drop a layer or an edge)")
    return drop


def _marked_carry(v: int, kind: Aggregation, in_edges: list[Edge]) -> list[Edge]:
    """A carrying node's in-edges (gated, laurel) with exactly one carry (the lowest source unless one is marked)."""
    marked = [e for e in in_edges if e.carry]
    if not kind.carried:
        if marked:
            carried = " or ".join(k.name for k in AGGREGATIONS.values() if k.carried)
            raise SpecError(f"edge {marked[0].src}->{v} carry: only a {carried} node has a carry input, "
                            f"node {v} is {kind.name}")
        return in_edges
    if len(marked) > 1:
        raise SpecError(f"node {v} ({kind.name}) marks {len(marked)} in-edges as carry; mark one")
    carry = marked[0] if marked else in_edges[0]
    return [replace(e, carry=e is carry) for e in in_edges]


def _node_width(v: int, data: dict, in_edges: list[Edge], widths: dict[int, int]) -> int:
    """Output width: given for input and layers, derived from inputs for identity nodes."""
    kind = get_aggregation(data.get("agg", "concat"), f"node {v}: ")
    options = dict(kind.resolve_options(data, f"node {v}"))
    reads = [(e.window[1] - e.window[0]) if e.window else widths[e.src] for e in in_edges]
    _check_inputs(v, kind, in_edges, reads, options=options)
    if data.get("op") == OUTPUT_OP:
        return kind.input_width(reads, options)
    width = int(data.get("width", 0))
    if width <= 0:
        raise SpecError(f"node {v} needs a positive width, got {width}")
    return width


def _check_inputs(v: int, kind: Aggregation, in_edges: list[Edge], reads: list[int], own: bool = False,
                  port: str = "", options: dict | None = None) -> None:
    """The kind's arity, width and drop rules on node v's in-edges (of one port; `own`: the op's output joins)."""
    where = f"node {v}" + (f" port {port}" if port else "")
    if kind.width_rule is not None and in_edges:
        try:
            kind.width_rule(reads, options or {})
        except ValueError as err:
            raise SpecError(f"{where} ({kind.name}) {err}") from None
    n = len(in_edges) + own
    if kind.arity is not None and in_edges and n != kind.arity:
        raise SpecError(f"{where} ({kind.name}) needs exactly {kind.arity} in-edges, has {n}")
    if kind.dynamic and in_edges and n < 2:
        raise SpecError(f"{where} ({kind.name}) weighs its inputs per token and needs at least 2 in-edges, has {n}; "
                        "use sum for one input")
    if not kind.concat and kind.width_rule is None and len(set(reads)) > 1:
        detail = ", ".join(f"{e.src}:{w}" for e, w in zip(in_edges, reads))
        raise SpecError(f"node {v} {kind.verb} inputs of unequal widths ({detail}); use concat or equal widths")
    labelled = [e for e in in_edges if e.column]
    if labelled and not kind.renormalise:
        raise SpecError(f"edge {labelled[0].src}->{v} column: global drop-path columns label the inputs of a "
                        f"renormalising join ({', '.join(k.name for k in AGGREGATIONS.values() if k.renormalise)}), "
                        f"node {v} is {kind.name}")


def _check_ops(nodes: list[Node], ops: frozenset[str]) -> None:
    known = ops | {INPUT_OP, OUTPUT_OP}
    for n in nodes:
        if n.op not in known:
            raise SpecError(f"node {n.id}: unknown op {n.op!r}; known: {', '.join(sorted(known))}")
    if nodes[0].op != INPUT_OP or max(nodes, key=lambda n: n.id).op != OUTPUT_OP:
        raise SpecError(f"node 0 must have op {INPUT_OP!r} and the last node op {OUTPUT_OP!r}")
