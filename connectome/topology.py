"""Topology metrics of a spec: per block and for the whole network, as flat `topo.*` columns.

Every metric depends on the graph only up to renumbering of layers. A skip's span is
measured in depth (longest path from the block input), which equals `v - u` in the paper's
numbered blocks. The whole network chains the blocks: block i's output feeds block i+1's
input through one transition edge.
"""
from __future__ import annotations

import math

import networkx as nx

from connectome.spec import BlockSpec, NetworkSpec

PREFIX = "topo."


def metrics(g: nx.DiGraph, source, sink) -> dict[str, float]:
    """Edges, density, fan-in/out, skip span, input-output paths and clustering of one DAG."""
    n = len(g)
    order = list(nx.topological_sort(g))
    depth = node_depths(g, order)
    fan_in = [d for v, d in g.in_degree() if v != source]
    fan_out = [d for v, d in g.out_degree() if v != sink]
    spans = [depth[v] - depth[u] for u, v in g.edges]
    count, total = _path_counts(g, order, source)
    return {
        "edges": g.number_of_edges(),
        "density": g.number_of_edges() / (n * (n - 1) / 2) if n > 1 else 0.0,
        "fan_in_mean": _mean(fan_in), "fan_in_max": max(fan_in, default=0),
        "fan_out_mean": _mean(fan_out), "fan_out_max": max(fan_out, default=0),
        "span_mean": _mean(spans), "span_max": max(spans, default=0),
        "log10_paths": math.log10(count[sink]) if count[sink] else 0.0,
        "longest_path": depth[sink],
        "shortest_path": nx.shortest_path_length(g, source, sink),
        "mean_path": total[sink] / count[sink] if count[sink] else math.nan,
        "clustering": nx.average_clustering(g.to_undirected()),
    }


def node_depths(g: nx.DiGraph, order: list) -> dict:
    """Longest-path distance from the sources, per node."""
    depth = {}
    for v in order:
        depth[v] = max((depth[u] + 1 for u in g.predecessors(v)), default=0)
    return depth


def _path_counts(g: nx.DiGraph, order: list, source) -> tuple[dict, dict]:
    """Per node: number of paths from the source, and the summed length of those paths (exact ints)."""
    count = {v: 0 for v in order}
    total = {v: 0 for v in order}
    count[source] = 1
    for v in order:
        for u in g.predecessors(v):
            count[v] += count[u]
            total[v] += total[u] + count[u]
    return count, total


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else 0.0


def network_graph(spec: NetworkSpec) -> nx.DiGraph:
    """All blocks in one DAG over (block, node) pairs, joined by one edge per transition."""
    g = nx.DiGraph()
    for i, block in enumerate(spec.blocks):
        g.add_edges_from(((i, e.src), (i, e.dst)) for e in block.edges)
        if i:
            g.add_edge((i - 1, spec.blocks[i - 1].output), (i, 0))
    return g


def block_metrics(block: BlockSpec) -> dict[str, float]:
    """Metrics of one block between its input (node 0) and its output (a pair joined once per port counts once)."""
    return metrics(nx.DiGraph(block.to_graph()), 0, block.output)


def topology_columns(spec: NetworkSpec) -> dict[str, float]:
    """`topo.<metric>` for the network and `topo.block<i>.<metric>` for each block (from 1)."""
    last = (len(spec.blocks) - 1, spec.blocks[-1].output)
    cols = {f"{PREFIX}{k}": v for k, v in metrics(network_graph(spec), (0, 0), last).items()}
    for i, block in enumerate(spec.blocks, start=1):
        cols.update({f"{PREFIX}block{i}.{k}": v for k, v in block_metrics(block).items()})
    return cols
