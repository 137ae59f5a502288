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

    def attributes(self) -> dict:
        """The wiring attributes that differ from their defaults (what files and hashes carry)."""
        return {k: v for k, v in (("drop", self.drop), ("column", self.column), ("carry", self.carry)) if v}


@dataclass(frozen=True)
class Node:
    """One node of a block: its operation, how it aggregates inputs, its output width."""

    id: int
    op: str
    agg: str
    width: int
    drop: float = 0.0  # stochastic depth: probability that a training batch zeroes this node's output
    options: tuple[tuple[str, Any], ...] = ()  # the aggregation kind's options, sorted by name

    def attributes(self) -> dict:
        """The wiring attributes beyond op/agg/width (drop when set, the kind's options)."""
        return {**({"drop": self.drop} if self.drop else {}), **dict(self.options)}


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
            in_edges = [_edge(graph, u, v, widths) for u in sorted(graph.predecessors(v))]
            widths[v] = _node_width(v, data, in_edges, widths)
            kind = get_aggregation(data.get("agg", "concat"))
            in_edges = _marked_carry(v, kind.name, in_edges)
            options = kind.resolve_options(data, f"node {v}")
            nodes.append(Node(v, data["op"], kind.name, widths[v], _node_drop(v, data, graph), options))
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

    def read_width(self, edge: Edge) -> int:
        """Channels an edge carries."""
        if edge.window is None:
            return self.nodes[edge.src].width
        return edge.window[1] - edge.window[0]

    def input_width(self, v: int) -> int:
        """Channels of node v's aggregated input."""
        return AGGREGATIONS[self.nodes[v].agg].input_width([self.read_width(e) for e in self.inputs[v]])

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
        """The block as a networkx DiGraph with every attribute from_graph reads (windows "lo:hi" if text_windows)."""
        g = nx.DiGraph(**({"global_drop": self.global_drop} if self.global_drop else {}))
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
    # Kinds of the transitions one by one, where they differ (EfficientNet's stage units, RDNet's
    # downsampling rule); empty: every transition is `transition`.
    transition_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
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
                 "transition_kinds": ()}
# Layouts and their channel dimension: images NCHW, token sequences (batch, tokens, width).
CHANNEL_DIM = {"maps": 1, "tokens": -1}


def _edge_key(e: Edge) -> tuple[int, int]:
    return (e.dst, e.src)


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
    return Node(v, op, agg, width, drop, tuple(sorted(extra.items())))


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


def _edge(graph: nx.DiGraph, u: int, v: int, widths: dict[int, int]) -> Edge:
    """Edge with a validated window and wiring attributes."""
    data = graph.edges[u, v]
    attrs = {"drop": _probability(data.get("drop", 0.0), f"edge {u}->{v} drop"),
             "column": _column(data.get("column", 0), f"edge {u}->{v} column"),
             "carry": _flag(data.get("carry", False), f"edge {u}->{v} carry")}
    window = data.get("window")
    if window is None:
        return Edge(u, v, **attrs)
    lo, hi = (int(x) for x in window)
    if not 0 <= lo < hi <= widths[u]:
        raise SpecError(
            f"edge {u}->{v} reads channels {lo}:{hi} but node {u} has only {widths[u]} channels"
        )
    return Edge(u, v, None if (lo, hi) == (0, widths[u]) else (lo, hi), **attrs)


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


def _marked_carry(v: int, agg: str, in_edges: list[Edge]) -> list[Edge]:
    """A gated node's in-edges with exactly one carry (the lowest source unless one is marked)."""
    marked = [e for e in in_edges if e.carry]
    if agg != "gated":
        if marked:
            raise SpecError(f"edge {marked[0].src}->{v} carry: only a gated node has a carry input, node {v} is {agg}")
        return in_edges
    if len(marked) > 1:
        raise SpecError(f"node {v} (gated) marks {len(marked)} in-edges as carry; mark one")
    carry = marked[0] if marked else in_edges[0]
    return [replace(e, carry=e is carry) for e in in_edges]


def _node_width(v: int, data: dict, in_edges: list[Edge], widths: dict[int, int]) -> int:
    """Output width: given for input and layers, derived from inputs for identity nodes."""
    kind = get_aggregation(data.get("agg", "concat"), f"node {v}: ")
    reads = [(e.window[1] - e.window[0]) if e.window else widths[e.src] for e in in_edges]
    _check_inputs(v, kind, in_edges, reads)
    if data.get("op") == OUTPUT_OP:
        return kind.input_width(reads)
    width = int(data.get("width", 0))
    if width <= 0:
        raise SpecError(f"node {v} needs a positive width, got {width}")
    return width


def _check_inputs(v: int, kind: Aggregation, in_edges: list[Edge], reads: list[int]) -> None:
    """The kind's arity, width and drop rules on node v's in-edges."""
    if kind.arity is not None and in_edges and len(in_edges) != kind.arity:
        raise SpecError(f"node {v} ({kind.name}) needs exactly {kind.arity} in-edges, has {len(in_edges)}")
    if not kind.concat and len(set(reads)) > 1:
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
