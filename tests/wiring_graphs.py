"""Small block graphs in the wiring language, shared by the tests of spec, executor, complexity and files."""
import networkx as nx

from connectome.costs import OP_KINDS
from connectome.spec import BlockSpec, NetworkSpec

# Each aggregation kind with the options a test exercises: (id, agg, node attributes of the join).
KINDS = [
    ("concat", "concat", {}),
    ("sum", "sum", {}),
    ("mean", "mean", {}),
    ("weighted-ones", "weighted", {"weights": "ones"}),
    ("weighted-nearest", "weighted", {"weights": "nearest"}),
    ("weighted-uniform", "weighted", {"weights": "uniform"}),
    ("weighted-sigmoid", "weighted", {"weights": "sigmoid"}),
    ("gated", "gated", {}),
    ("gated-1x1", "gated", {"gate_kernel": 1, "gate_bias": -1.0}),
    ("mudd", "mudd", {}),
    ("mudd-expand-2", "mudd", {"expand": 2.0}),
    ("depth-attention", "depth-attention", {}),
    ("laurel-rw", "laurel", {"form": "rw"}),
    ("laurel-lr", "laurel", {"form": "lr", "rank": 2}),
    ("laurel-rw+lr", "laurel", {"form": "rw+lr", "rank": 2}),
]


def join_graph(agg, width=4, edge_attrs=None, node_drop=0.0, **join_attrs):
    """x (node 0) -> layer 1 (conv3x3) -> output node 2 joining x and layer 1 with `agg`."""
    g = nx.DiGraph()
    g.add_node(0, op="input", agg="concat", width=width)
    g.add_node(1, op="conv3x3", agg="concat", width=width, **({"drop": node_drop} if node_drop else {}))
    g.add_node(2, op="identity", agg=agg, width=0, **join_attrs)
    g.add_edges_from([(0, 1), (0, 2), (1, 2)])
    for (u, v), attrs in (edge_attrs or {}).items():
        g.edges[u, v].update(attrs)
    return g


def wiring_graph():
    """A block with every wiring attribute: gated and mean joins, a weighted layer and output, drops, columns."""
    g = nx.DiGraph(global_drop=0.5)
    g.add_node(0, op="input", agg="concat", width=4)
    g.add_node(1, op="conv3x3", agg="concat", width=4, drop=0.25)
    g.add_node(2, op="identity", agg="gated", width=0, gate_kernel=1, gate_bias=-3.0)
    g.add_node(3, op="conv3x3", agg="weighted", width=4, weights="uniform")
    g.add_node(4, op="identity", agg="mean", width=0)
    g.add_node(5, op="identity", agg="weighted", width=0, weights="nearest")
    g.add_edges_from([(0, 1), (1, 2), (0, 3), (2, 3), (0, 5)])
    g.add_edge(0, 2, carry=True)
    g.add_edge(2, 4, drop=0.15, column=1)
    g.add_edge(3, 4, drop=0.15, column=2)
    g.add_edge(4, 5, drop=0.1)
    return g


def block(graph):
    return BlockSpec.from_graph(graph, frozenset(OP_KINDS.costs))


def network(*blocks, classes=3):
    """A one-stage CIFAR-stem network around blocks of equal input width (transitions keep it)."""
    width = blocks[0].in_channels
    return NetworkSpec(stem="cifar", in_channels=3, stem_channels=width, blocks=tuple(blocks),
                       transitions=tuple(b.in_channels for b in blocks[1:]), classes=classes, growth=width)
