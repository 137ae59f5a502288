"""The spec: validation errors, JSON round trip, canonical hash."""
import networkx as nx
import pytest

from connectome import build_spec, make_arch
from connectome.costs import OP_KINDS
from connectome.errors import SpecError
from connectome.spec import BlockSpec, NetworkSpec


def _block(edges, n=3, widths=None, **edge_attrs):
    g = nx.DiGraph()
    g.add_node(0, op="input", width=8)
    for v in range(1, n + 1):
        g.add_node(v, op="conv3x3", agg="concat", width=(widths or {}).get(v, 4))
    g.add_node(n + 1, op="identity", agg="concat")
    g.add_edges_from(edges)
    for (u, v), attrs in edge_attrs.get("attrs", {}).items():
        g.edges[u, v].update(attrs)
    return g


def test_valid_block_derives_output_width():
    block = BlockSpec.from_graph(_block([(0, 1), (1, 2), (0, 2), (2, 3), (3, 4), (0, 4)]))
    assert block.out_channels == 4 + 8
    assert block.input_width(2) == 12


def test_cycle_is_rejected_and_named():
    with pytest.raises(SpecError, match="cycle: 1 -> 2 -> 3|cycle: 2 -> 3 -> 1|cycle: 3 -> 1 -> 2"):
        BlockSpec.from_graph(_block([(0, 1), (1, 2), (2, 3), (3, 1), (3, 4)]))


def test_unreachable_layer_is_rejected():
    with pytest.raises(SpecError, match=r"layers \[2\] are unreachable"):
        BlockSpec.from_graph(_block([(0, 1), (1, 3), (2, 3), (3, 4)]))


def test_dead_end_layer_is_rejected():
    with pytest.raises(SpecError, match=r"layers \[2\] never reach the block output"):
        BlockSpec.from_graph(_block([(0, 1), (1, 2), (1, 3), (3, 4)]))


def test_window_larger_than_source_is_rejected():
    g = _block([(0, 1), (1, 2), (2, 3), (3, 4)], attrs={(0, 1): {"window": (4, 9)}})
    with pytest.raises(SpecError, match="reads channels 4:9 but node 0 has only 8 channels"):
        BlockSpec.from_graph(g)


def test_unknown_op_and_aggregation_are_rejected():
    g = _block([(0, 1), (1, 2), (2, 3), (3, 4)])
    g.nodes[2]["op"] = "conv5x5"
    with pytest.raises(SpecError, match="unknown op 'conv5x5'"):
        BlockSpec.from_graph(g, frozenset(OP_KINDS.costs))
    g.nodes[2]["op"], g.nodes[2]["agg"] = "conv3x3", "max"
    with pytest.raises(SpecError, match="unknown aggregation 'max'"):
        BlockSpec.from_graph(g)


def test_non_positive_width_is_rejected():
    with pytest.raises(SpecError, match="node 1 needs a positive width"):
        BlockSpec.from_graph(_block([(0, 1), (1, 2), (2, 3), (3, 4)], widths={1: 0}))


def test_edge_insertion_order_does_not_change_the_spec():
    edges = [(0, 1), (0, 2), (1, 2), (2, 3), (1, 3), (3, 4), (0, 4)]
    assert BlockSpec.from_graph(_block(edges)) == BlockSpec.from_graph(_block(edges[::-1]))


@pytest.mark.parametrize("preset", ["densenet-40-12", "partial-40-12", "densenet121"])
def test_json_round_trip_keeps_spec_and_hash(preset):
    spec = build_spec(make_arch(preset=preset))
    back = NetworkSpec.from_json(spec.to_json())
    assert back == spec
    assert back.graph_hash == spec.graph_hash


def test_equal_architectures_hash_equal():
    by_preset = build_spec(make_arch(preset="densenet-bc-100-12"))
    explicit = build_spec(make_arch(depth=100, growth=12, bottleneck=True, compression=0.5))
    assert by_preset.graph_hash == explicit.graph_hash
    by_blocks = build_spec(make_arch(block_layers=[12, 12, 12], growth=12))
    assert by_blocks.graph_hash == build_spec(make_arch(depth=40, growth=12)).graph_hash
    partial_full = build_spec(make_arch(pattern="partial", m=[16, 160, 304]))
    assert partial_full.graph_hash == build_spec(make_arch(preset="partial-40-12")).graph_hash


def test_execution_options_do_not_change_the_hash():
    a = build_spec(make_arch(depth=40, memory_efficient=True))
    assert a.graph_hash == build_spec(make_arch(depth=40)).graph_hash


def test_different_architectures_hash_differently():
    hashes = {build_spec(make_arch(depth=40, growth=k)).graph_hash for k in (11, 12)}
    hashes |= {build_spec(make_arch(pattern=p, depth=40)).graph_hash for p in ("dense", "partial", "sparse")}
    assert len(hashes) == 4


# The wiring language (docs/design.md): kinds, options and drop attributes are validated and hashed.
from connectome.aggregations import AGGREGATIONS  # noqa: E402
from wiring_graphs import KINDS, join_graph, network, wiring_graph  # noqa: E402


def test_unknown_aggregation_names_every_registered_kind():
    g = join_graph("max")
    with pytest.raises(SpecError, match=f"node 2: unknown aggregation .max.; known: {', '.join(sorted(AGGREGATIONS))}"):
        BlockSpec.from_graph(g)
    assert set(AGGREGATIONS) >= {"concat", "sum", "mean", "gated", "weighted"}


@pytest.mark.parametrize("agg, verb", [("sum", "sums"), ("mean", "averages"), ("gated", "gates"),
                                       ("weighted", "weighs")])
def test_equal_width_kinds_refuse_unequal_inputs(agg, verb):
    g = join_graph(agg)
    g.nodes[1]["width"] = 6
    with pytest.raises(SpecError, match=f"node 2 {verb} inputs of unequal widths \\(0:4, 1:6\\)"):
        BlockSpec.from_graph(g)


def test_gated_needs_exactly_two_in_edges_and_one_carry():
    g = nx.DiGraph([(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)])
    g.add_node(0, op="input", width=4)
    g.add_nodes_from([1, 2], op="conv3x3", agg="concat", width=4)
    g.add_node(3, op="identity", agg="gated")
    with pytest.raises(SpecError, match="node 3 \\(gated\\) needs exactly 2 in-edges, has 3"):
        BlockSpec.from_graph(g)
    both = join_graph("gated", edge_attrs={(0, 2): {"carry": True}, (1, 2): {"carry": True}})
    with pytest.raises(SpecError, match="marks 2 in-edges as carry"):
        BlockSpec.from_graph(both)
    with pytest.raises(SpecError, match="only a gated or laurel node has a carry input"):
        BlockSpec.from_graph(join_graph("sum", edge_attrs={(0, 2): {"carry": True}}))


def test_gated_carry_defaults_to_the_lowest_source_and_is_stored():
    spec = BlockSpec.from_graph(join_graph("gated"))
    assert [(e.src, e.carry) for e in spec.inputs[2]] == [(0, True), (1, False)]
    marked = BlockSpec.from_graph(join_graph("gated", edge_attrs={(0, 2): {"carry": True}}))
    assert marked == spec


@pytest.mark.parametrize("where, value", [("edge", 1.0), ("edge", -0.1), ("edge", "0.5"), ("node", 1.5),
                                          ("graph", 1), ("node", True)])
def test_drop_probability_outside_zero_one_is_refused(where, value):
    g = join_graph("mean")
    target = {"edge": g.edges[1, 2], "node": g.nodes[1], "graph": g.graph}[where]
    target["global_drop" if where == "graph" else "drop"] = value
    with pytest.raises(SpecError, match=r"must be a probability in \[0, 1\), got"):
        BlockSpec.from_graph(g)


def test_block_input_and_output_cannot_be_dropped():
    g = join_graph("sum")
    g.nodes[2]["drop"] = 0.5
    with pytest.raises(SpecError, match="the block input and output cannot be dropped"):
        BlockSpec.from_graph(g)


def test_columns_label_only_the_inputs_of_a_mean():
    with pytest.raises(SpecError, match="edge 1->2 column: .* renormalising join \\(mean\\), node 2 is sum"):
        BlockSpec.from_graph(join_graph("sum", edge_attrs={(1, 2): {"column": 1}}))
    with pytest.raises(SpecError, match="column must be a whole number >= 0"):
        BlockSpec.from_graph(join_graph("mean", edge_attrs={(1, 2): {"column": -1}}))


@pytest.mark.parametrize("attrs, message", [({"weights": "zeros"}, "node 2 weights must be one of ones, nearest"),
                                            ({"gate_kernel": 5}, "node 2 gate_kernel must be one of 1, 3"),
                                            ({"gate_bias": "low"}, "node 2 gate_bias must be a number")])
def test_kind_options_are_validated(attrs, message):
    agg = "weighted" if "weights" in attrs else "gated"
    with pytest.raises(SpecError, match=message):
        BlockSpec.from_graph(join_graph(agg, **attrs))


def test_options_are_filled_with_defaults():
    assert BlockSpec.from_graph(join_graph("gated")).nodes[2].options == (("gate_bias", -2.0), ("gate_kernel", 3))
    assert BlockSpec.from_graph(join_graph("weighted")).nodes[2].options == (("weights", "ones"),)


@pytest.mark.parametrize("name, agg, attrs", KINDS, ids=[k[0] for k in KINDS])
def test_every_kind_round_trips_through_json_with_its_hash(name, agg, attrs):
    spec = network(BlockSpec.from_graph(join_graph(agg, **attrs)))
    again = NetworkSpec.from_json(spec.to_json())
    assert again == spec and again.graph_hash == spec.graph_hash


def test_wiring_attributes_round_trip_through_json_and_to_graph():
    spec = network(BlockSpec.from_graph(wiring_graph()))
    assert NetworkSpec.from_json(spec.to_json()) == spec
    block = spec.blocks[0]
    assert BlockSpec.from_graph(block.to_graph()) == block
    assert block.global_drop == 0.5 and block.columns == {1, 2} and block.nodes[1].drop == 0.25


def test_exact_hash_tells_kinds_options_and_drops_apart():
    hashes = {network(BlockSpec.from_graph(join_graph(agg, **attrs))).graph_hash for _, agg, attrs in KINDS}
    dropped = network(BlockSpec.from_graph(join_graph("sum", edge_attrs={(1, 2): {"drop": 0.1}}))).graph_hash
    assert len(hashes) == len(KINDS) and dropped not in hashes


def test_plain_graphs_serialise_as_before():
    """Unset wiring attributes leave the JSON (hence graph_hash and trial records) as it was."""
    d = network(BlockSpec.from_graph(join_graph("sum"))).to_dict()
    nodes = [[0, "input", "concat", 4], [1, "conv3x3", "concat", 4], [2, "identity", "sum", 4]]
    assert d["blocks"] == [{"nodes": nodes, "edges": [[0, 1, None], [0, 2, None], [1, 2, None]]}]
