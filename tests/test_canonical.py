"""Canonical hash: invariant to renumbering layers, sensitive to every functional attribute."""
import dataclasses

import networkx as nx
import pytest

from connectome import build_spec, make_arch
from connectome.canonical import CanonicalIndex, blocks_isomorphic, networks_isomorphic
from connectome.spec import BlockSpec, NetworkSpec


def _graph(edges, n, widths=None, aggs=None, windows=None):
    g = nx.DiGraph()
    g.add_node(0, op="input", agg="concat", width=8)
    for v in range(1, n + 1):
        g.add_node(v, op="conv3x3", agg=(aggs or {}).get(v, "concat"), width=(widths or {}).get(v, 4))
    g.add_node(n + 1, op="identity", agg="concat")
    g.add_edges_from(edges)
    for (u, v), w in (windows or {}).items():
        g.edges[u, v]["window"] = w
    return g


def _relabel(g: nx.DiGraph, layers: dict[int, int]) -> nx.DiGraph:
    return nx.relabel_nodes(g, {v: layers.get(v, v) for v in g.nodes})


# 0 -> 1 -> 2 -> 4, 0 -> 3 -> 4 with a windowed skip 0 -> 2: layers 1..3 have different roles
EDGES = [(0, 1), (1, 2), (0, 2), (2, 4), (0, 3), (3, 4)]
BASE = dict(edges=EDGES, n=3, widths={1: 4, 2: 6, 3: 4}, windows={(0, 2): (2, 6)})
SWAP = {1: 3, 3: 1}


def _network(block: BlockSpec) -> NetworkSpec:
    return NetworkSpec(stem="conv3x3", in_channels=3, stem_channels=8, blocks=(block,), transitions=(),
                       classes=10, growth=4)


def test_renumbered_block_has_same_canonical_hash_and_different_spec_hash():
    a = BlockSpec.from_graph(_graph(**BASE))
    b = BlockSpec.from_graph(_relabel(_graph(**BASE), SWAP))
    assert a.edges != b.edges  # really renumbered
    assert a.canonical_hash == b.canonical_hash
    na, nb = _network(a), _network(b)
    assert na.graph_hash != nb.graph_hash
    assert na.canonical_hash == nb.canonical_hash
    assert networks_isomorphic(na, nb)


@pytest.mark.parametrize("change", ["op", "agg", "width", "window", "edge", "classes", "dropout", "stem"])
def test_any_functional_attribute_change_changes_canonical_hash(change):
    base = BlockSpec.from_graph(_graph(**BASE))
    g = _graph(**BASE)
    if change == "op":
        g.nodes[1]["op"] = "bottleneck"
    elif change == "agg":
        g.nodes[2]["agg"] = "sum"
        g.edges[0, 2]["window"] = (0, 4)  # sum needs equal widths: 4 and 4
    elif change == "width":
        g.nodes[3]["width"] = 5
    elif change == "window":
        g.edges[0, 2]["window"] = (0, 4)
    elif change == "edge":
        g.add_edge(1, 4)
    block = BlockSpec.from_graph(g)
    net = _network(block)
    if change in ("classes", "dropout", "stem"):
        update = {"classes": 11, "dropout": 0.2, "stem": "imagenet"}[change]
        net = dataclasses.replace(_network(base), **{change: update})
    else:
        assert block.canonical_hash != base.canonical_hash
    assert net.canonical_hash != _network(base).canonical_hash
    assert not networks_isomorphic(net, _network(base))


def test_aggregation_of_single_input_node_is_not_functional():
    g = _graph(**BASE)
    g.nodes[1]["agg"] = "sum"  # node 1 reads only node 0
    assert BlockSpec.from_graph(g).canonical_hash == BlockSpec.from_graph(_graph(**BASE)).canonical_hash


def test_growth_label_alone_does_not_change_canonical_hash():
    net = _network(BlockSpec.from_graph(_graph(**BASE)))
    assert dataclasses.replace(net, growth=99).canonical_hash == net.canonical_hash


def _bipartite_block(pairs):
    """Input -> layers 1..4 -> layers 5..8 (each reading two of 1..4) -> output 9."""
    edges = [(0, a) for a in range(1, 5)] + [(a, b) for a, b in pairs] + [(b, 9) for b in range(5, 9)]
    return BlockSpec.from_graph(_graph(edges, n=8))


# Both 2-regular between {1..4} and {5..8}: an 8-cycle versus two 4-cycles. WL cannot tell them apart.
CYCLE8 = [(1, 5), (2, 5), (2, 6), (3, 6), (3, 7), (4, 7), (4, 8), (1, 8)]
TWO_CYCLE4 = [(1, 5), (2, 5), (1, 6), (2, 6), (3, 7), (4, 7), (3, 8), (4, 8)]


def test_wl_collision_is_separated_by_the_exact_check():
    a, b = _bipartite_block(CYCLE8), _bipartite_block(TWO_CYCLE4)
    assert a.canonical_hash == b.canonical_hash  # the known WL blind spot
    assert not blocks_isomorphic(a, b)
    index = CanonicalIndex()
    ka, kb = index.key(_network(a)), index.key(_network(b))
    assert ka != kb and kb == f"{ka}.1"
    renumbered = BlockSpec.from_graph(_relabel(_graph(
        [(0, a) for a in range(1, 5)] + TWO_CYCLE4 + [(b, 9) for b in range(5, 9)], n=8), {1: 3, 3: 1, 5: 8, 8: 5}))
    assert index.key(_network(renumbered)) == kb
    assert len(index) == 2


def test_presets_keep_distinct_canonical_hashes():
    specs = [build_spec(make_arch(pattern=p, depth=22, growth=6)) for p in ("dense", "plain", "sparse", "residual")]
    assert len({s.canonical_hash for s in specs}) == 4
    assert build_spec(make_arch(depth=22, growth=6)).canonical_hash == specs[0].canonical_hash


def test_canonical_hash_tells_the_kinds_around_the_blocks_and_dropout_by_block_apart():
    # decoders with 4 or 8 heads have the same params and multiply-adds: only op_options tell them apart
    heads = [build_spec(make_arch(family="decoder", pattern="prenorm", growth=32, heads=h)) for h in (4, 8)]
    fractal = [build_spec(make_arch(preset="fractalnet-21", growth=4, block_dropout=r)) for r in (None, [0.1] * 5)]
    tied = [build_spec(make_arch(family="decoder", pattern="prenorm", growth=32, tie_embeddings=t)) for t in (1, 0)]
    b0 = build_spec(make_arch(preset="efficientnet_b0"))
    kinds = [b0, dataclasses.replace(b0, transition_kinds=tuple(reversed(b0.transition_kinds)))]  # strides moved
    for a, b in (heads, fractal, tied, kinds):
        assert a.canonical_hash != b.canonical_hash and not networks_isomorphic(a, b)
    # the fields at their defaults stay out: a DenseNet's canonical hash is the one earlier releases gave
    assert build_spec(make_arch(preset="densenet-40-12")).canonical_hash == "18f56e121b4e62e5"


# The wiring language: kinds, options, drops, columns and carries change the canonical form.
from wiring_graphs import KINDS, join_graph, network, wiring_graph  # noqa: E402


def _canonical(graph):
    return network(BlockSpec.from_graph(graph)).canonical_hash


def test_canonical_hash_tells_aggregation_kinds_and_options_apart():
    hashes = [_canonical(join_graph(agg, **attrs)) for _, agg, attrs in KINDS]
    assert len(set(hashes)) == len(KINDS)


@pytest.mark.parametrize("change", [
    lambda g: g.edges[1, 2].update(drop=0.2),
    lambda g: g.nodes[1].update(drop=0.2),
    lambda g: g.edges[1, 2].update(column=1),
    lambda g: g.graph.update(global_drop=0.5),
])
def test_canonical_hash_tells_drops_and_columns_apart(change):
    g = join_graph("mean")
    before = _canonical(g)
    change(g)
    assert _canonical(g) != before


def test_canonical_hash_tells_the_carry_apart():
    carry_x = join_graph("gated")
    carry_h = join_graph("gated", edge_attrs={(1, 2): {"carry": True}})
    assert _canonical(carry_x) != _canonical(carry_h)


def _branches(node_drop_on, edge_drop_on):
    """Two parallel conv branches 1, 2 into a mean (node 3); one node drop and one edge drop placed by id."""
    g = nx.DiGraph([(0, 1), (0, 2), (1, 3), (2, 3)])
    g.add_node(0, op="input", width=4)
    g.add_nodes_from([1, 2], op="conv3x3", agg="concat", width=4)
    g.add_node(3, op="identity", agg="mean")
    g.nodes[node_drop_on]["drop"] = 0.1
    g.edges[edge_drop_on, 3]["drop"] = 0.3
    return network(BlockSpec.from_graph(g))


def test_renumbering_keeps_the_canonical_hash_of_a_wired_block():
    a, renumbered, other = _branches(1, 2), _branches(2, 1), _branches(1, 1)
    assert a.graph_hash != renumbered.graph_hash
    assert a.canonical_hash == renumbered.canonical_hash and networks_isomorphic(a, renumbered)
    assert a.canonical_hash != other.canonical_hash and not networks_isomorphic(a, other)


def test_one_input_mean_is_concat_but_one_input_weighted_is_not():
    def single(agg):
        g = nx.DiGraph([(0, 1), (1, 2)])
        g.add_node(0, op="input", width=4)
        g.add_node(1, op="conv3x3", agg=agg, width=4)
        g.add_node(2, op="identity", agg="concat")
        return _canonical(g)

    assert single("mean") == single("concat") == single("sum") != single("weighted")


def _two_chains(k: int, first_width: int = 4, second_width: int = 6, swap: bool = False):
    """Input -> two parallel chains of k layers (widths differ) -> output; `swap` numbers the chains the other way."""
    a, b = list(range(1, k + 1)), list(range(k + 1, 2 * k + 1))
    if swap:
        a, b = b, a
    edges = [(0, a[0]), (0, b[0]), (a[-1], 2 * k + 1), (b[-1], 2 * k + 1)]
    edges += list(zip(a, a[1:])) + list(zip(b, b[1:]))
    return _graph(edges, 2 * k, widths={**{v: first_width for v in a}, **{v: second_width for v in b}})


def test_blocks_over_the_wl_bound_get_a_dag_hash_that_ignores_numbering_and_sees_attributes(monkeypatch):
    """issue 30: WL rounds grow with the diameter, so a long chain cost its length squared."""
    from connectome import canonical

    def no_wl(*args, **kwargs):
        raise AssertionError("WL on a block over the bound")

    monkeypatch.setattr(canonical.nx, "weisfeiler_lehman_graph_hash", no_wl)
    monkeypatch.setattr(canonical.nx, "diameter", no_wl)  # itself quadratic: never computed there
    k = canonical.WL_MAX_NODES // 2 + 1
    one = BlockSpec.from_graph(_two_chains(k))
    renumbered = BlockSpec.from_graph(_two_chains(k, swap=True))
    assert _network(one).graph_hash != _network(renumbered).graph_hash  # really renumbered
    assert one.canonical_hash == renumbered.canonical_hash
    assert blocks_isomorphic(one, renumbered)
    wider = BlockSpec.from_graph(_two_chains(k, first_width=5))
    assert wider.canonical_hash != one.canonical_hash
    chain = BlockSpec.from_graph(_graph([(v, v + 1) for v in range(4 * k + 1)], 4 * k))
    assert len({chain.canonical_hash, one.canonical_hash, wider.canonical_hash}) == 3


def test_blocks_within_the_wl_bound_keep_their_wl_hash():
    from connectome import canonical

    small = BlockSpec.from_graph(_two_chains(canonical.WL_MAX_NODES // 2 - 2))  # at the bound: WL
    assert len(canonical.labelled_graph(small)) <= canonical.WL_MAX_NODES
    assert small.canonical_hash != canonical.dag_hash(canonical.labelled_graph(small))
