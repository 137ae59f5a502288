"""Topology metrics: closed forms on dense and chain blocks, invariance, network composition."""
import math

import networkx as nx
import pytest

from connectome import build_spec, make_arch
from connectome.spec import BlockSpec
from connectome.topology import block_metrics, topology_columns


@pytest.mark.parametrize("n", [1, 2, 5])
def test_dense_block_closed_forms(n):
    block = build_spec(make_arch(block_layers=[n], growth=4)).blocks[0]
    m = block_metrics(block)
    assert m["edges"] == (n + 1) * (n + 2) // 2 and m["density"] == 1.0
    assert m["log10_paths"] == pytest.approx(n * math.log10(2))  # any subset of the n layers
    assert m["longest_path"] == n + 1 and m["shortest_path"] == 1
    assert m["mean_path"] == pytest.approx(1 + n / 2)  # each layer on half of the paths
    assert m["span_max"] == n + 1 and m["fan_in_max"] == n + 1 and m["clustering"] == 1.0


def test_chain_block():
    m = block_metrics(build_spec(make_arch(pattern="plain", block_layers=[4], growth=4)).blocks[0])
    assert (m["edges"], m["log10_paths"], m["longest_path"], m["shortest_path"], m["mean_path"]) == (5, 0.0, 5, 5, 5)
    assert m["span_max"] == 1 and m["clustering"] == 0.0 and m["fan_in_mean"] == 1.0


def test_metrics_ignore_layer_numbering():
    g = nx.DiGraph([(0, 1), (1, 2), (0, 2), (2, 4), (0, 3), (3, 4)])
    for v in g:
        g.nodes[v].update(op="conv3x3", agg="concat", width=4)
    g.nodes[0]["op"], g.nodes[4]["op"] = "input", "identity"
    swapped = nx.relabel_nodes(g, {1: 3, 3: 1})
    a, b = BlockSpec.from_graph(g), BlockSpec.from_graph(swapped)
    assert a.edges != b.edges and block_metrics(a) == block_metrics(b)
    assert block_metrics(a)["span_max"] == 2  # 0 -> 2 and 3 -> 4 (depth 1 -> 3), whatever the ids


def test_network_chains_the_blocks():
    spec = build_spec(make_arch(depth=16, growth=4))  # 3 blocks of 4 layers
    cols = topology_columns(spec)
    blocks = [{k.split(".", 2)[2]: v for k, v in cols.items() if k.startswith(f"topo.block{i}.")} for i in (1, 2, 3)]
    assert cols["topo.log10_paths"] == pytest.approx(sum(b["log10_paths"] for b in blocks))
    assert cols["topo.longest_path"] == sum(b["longest_path"] for b in blocks) + 2
    assert cols["topo.edges"] == sum(b["edges"] for b in blocks) + 2
    assert all(k.startswith("topo.") for k in cols) and len(cols) == 4 * 13
