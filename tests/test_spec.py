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
