"""Canonical (relabelling-invariant) form of block and network specs, and exact isomorphism.

`NetworkSpec.graph_hash` is exact: renumbering a block's layers changes it. The canonical
hash here is equal for specs that compute the same function up to a renumbering of layers:
it keeps every attribute that changes the function (op, aggregation kind and its options,
width, channel windows, drop probabilities, columns, the carry of a gated node, a block's
global drop-path rate, named ports (each port's kind and options, the port an edge feeds and the
output it reads), and the network's stem, transitions, classes, bn_size, dropout, and its
transition and head kinds, layout, op options and dropout by block where set) and
drops what does not: node ids, hence the concatenation order (a permutation of the next layer's
input weights), the aggregation of single-input nodes whose kind passes one input on (concat,
sum and mean of one tensor are the same) and the
nominal `growth` (the widths carry it). It is a Weisfeiler-Lehman hash (a DAG hash linear in edges for
blocks of over WL_MAX_NODES nodes), so two non-isomorphic graphs can share it; `CanonicalIndex` confirms every match with an exact
isomorphism check (networkx DiGraphMatcher with attribute matching) and separates them.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from typing import TYPE_CHECKING

import networkx as nx
from networkx.algorithms.isomorphism import DiGraphMatcher

from connectome.aggregations import AGGREGATIONS

if TYPE_CHECKING:
    from connectome.spec import BlockSpec, NetworkSpec

# Network fields that change the function besides the blocks (growth does not: widths carry it).
NETWORK_FIELDS = ("stem", "in_channels", "stem_channels", "transitions", "classes", "bn_size", "dropout")
# Fields added later (the kinds around the blocks, the decoder's options, dropout by block), hashed
# only away from these defaults.
LATER_NETWORK_FIELDS = {"transition": "densenet", "head": "bn-relu", "layout": "maps", "op_options": (),
                        "block_dropout": (), "transition_kinds": ()}
# Blocks of more nodes get the DAG hash (linear in edges) instead of Weisfeiler-Lehman, whose rounds
# grow with the diameter: a chain of n layers cost n^2 (9 s at 800, issue 30). The node count is an
# isomorphism invariant, so isomorphic blocks always take the same branch; below it hashes are unchanged.
WL_MAX_NODES = 256


def labelled_graph(block: BlockSpec) -> nx.DiGraph:
    """The block with one string `label` per node and edge: what the canonical form compares."""
    g = nx.DiGraph()
    for n in block.nodes:
        single = len(block.inputs[n.id]) <= 1 and AGGREGATIONS[n.agg].single_is_identity
        agg = "-" if single else n.agg  # one input: concat == sum == mean
        extra = {**n.attributes(), **({"global_drop": block.global_drop} if n.id == 0 and block.global_drop else {})}
        g.add_node(n.id, label=f"{n.op}|{agg}|{n.width}" + _suffix(extra))
    for e in block.edges:
        window = "all" if e.window is None else f"{e.window[0]}:{e.window[1]}"
        label = window + _suffix(e.attributes())
        if g.has_edge(e.src, e.dst):  # edges into other ports or from other outputs: one label for the pair
            label = "+".join(sorted((g.edges[e.src, e.dst]["label"], label)))
        g.add_edge(e.src, e.dst, label=label)
    return g


def _suffix(attributes: dict) -> str:
    """Wiring attributes as label text; empty when none is set, so older canonical hashes stay valid."""
    return "".join(f"|{k}={v}" for k, v in sorted(attributes.items()))


def _subdivided(g: nx.DiGraph) -> nx.DiGraph:
    """Each edge u->v as u -> (edge node labelled with the window) -> v.

    networkx's directed WL marks successors and predecessors apart only without `edge_attr`,
    so edge labels are folded into nodes of their own.
    """
    s = nx.DiGraph()
    s.add_nodes_from((v, {"label": "n:" + d["label"]}) for v, d in g.nodes(data=True))
    for u, v, d in g.edges(data=True):
        s.add_node((u, v), label="e:" + d["label"])
        s.add_edges_from([(u, (u, v)), ((u, v), v)])
    return s


def block_canonical_hash(block: BlockSpec) -> str:
    """WL hash of the labelled block, iterated until labels can cross the whole graph.

    A label crosses one original edge in two steps of the subdivided graph, so twice the
    block's undirected diameter (plus one) suffices; fewer rounds than full refinement can
    only add collisions, which the exact check in CanonicalIndex resolves.
    """
    g = labelled_graph(block)
    if len(g) > WL_MAX_NODES:
        return dag_hash(g)
    rounds = 2 * (nx.diameter(g.to_undirected()) + 1)
    with warnings.catch_warnings():  # networkx warns that directed hashes changed in 3.5
        warnings.simplefilter("ignore", UserWarning)
        return nx.weisfeiler_lehman_graph_hash(_subdivided(g), node_attr="label", iterations=rounds, digest_size=16)


def dag_hash(g: nx.DiGraph) -> str:
    """A relabelling-invariant hash of a labelled DAG in time linear in its edges (sorting aside).

    Each node's forward digest covers its label and the sorted digests of its in-edges (edge label,
    source's forward digest), in topological order; its backward digest the same over out-edges in
    reverse order; the hash digests the sorted pairs. Like WL it may collide for non-isomorphic
    graphs, which CanonicalIndex's exact check separates.
    """
    order = list(nx.topological_sort(g))
    forward: dict = {}
    backward: dict = {}
    for v in order:
        forward[v] = _digest(g.nodes[v]["label"], *sorted(_digest(g.edges[u, v]["label"], forward[u])
                                                            for u in g.predecessors(v)))
    for v in reversed(order):
        backward[v] = _digest(g.nodes[v]["label"], *sorted(_digest(g.edges[v, w]["label"], backward[w])
                                                             for w in g.successors(v)))
    return _digest("dag", *sorted(forward[v] + backward[v] for v in g))


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def network_fields(spec: NetworkSpec) -> dict:
    """The network fields that change the function; the later ones only where they differ from their
    default, so canonical hashes of earlier specs stay the same."""
    later = {k: getattr(spec, k) for k, default in LATER_NETWORK_FIELDS.items() if getattr(spec, k) != default}
    return {**{name: getattr(spec, name) for name in NETWORK_FIELDS}, **later}


def network_canonical_hash(spec: NetworkSpec) -> str:
    """Hash of the network fields and the blocks' canonical hashes, in block order."""
    fields = network_fields(spec)
    text = json.dumps({**fields, "blocks": [b.canonical_hash for b in spec.blocks]},
                      sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def blocks_isomorphic(a: BlockSpec, b: BlockSpec) -> bool:
    """Exact check: a label-preserving isomorphism that maps input to input and output to output."""
    ga, gb = labelled_graph(a), labelled_graph(b)
    if (len(ga), ga.size()) != (len(gb), gb.size()):
        return False
    same = lambda x, y: x["label"] == y["label"]  # noqa: E731
    return DiGraphMatcher(ga, gb, node_match=same, edge_match=same).is_isomorphic()


def networks_isomorphic(a: NetworkSpec, b: NetworkSpec) -> bool:
    """Same network fields and block i of one isomorphic to block i of the other."""
    if network_fields(a) != network_fields(b) or len(a.blocks) != len(b.blocks):
        return False
    return all(blocks_isomorphic(x, y) for x, y in zip(a.blocks, b.blocks))


class CanonicalIndex:
    """Canonical keys confirmed exactly: specs with one WL hash that are not isomorphic get `hash.1`, ..."""

    def __init__(self) -> None:
        self._classes: dict[str, list[NetworkSpec]] = {}  # WL hash -> one representative per class

    def key(self, spec: NetworkSpec) -> str:
        """The spec's canonical key, adding it as a new class if no known spec is isomorphic."""
        h = spec.canonical_hash
        reps = self._classes.setdefault(h, [])
        for i, rep in enumerate(reps):
            if networks_isomorphic(spec, rep):
                return _suffixed(h, i)
        reps.append(spec)
        return _suffixed(h, len(reps) - 1)

    def __len__(self) -> int:
        return sum(len(r) for r in self._classes.values())


def _suffixed(h: str, i: int) -> str:
    return h if i == 0 else f"{h}.{i}"
