"""A connectome plugin: the `pairs` pattern, in which each layer reads only the layers just before it."""
import networkx as nx

from connectome.patterns import BlockContext, empty_block, register_pattern


@register_pattern("pairs")
def pairs(ctx: BlockContext, reach: int = 2) -> nx.DiGraph:
    """Layer v reads the `reach` nodes before it (node 0 is the block input); the output reads all."""
    g = empty_block(ctx)  # nodes 0 (input), 1..n (layers), n+1 (output), no edges yet
    for v in range(1, ctx.n_layers + 1):
        g.add_edges_from((u, v) for u in range(max(0, v - reach), v))
    g.add_edges_from((u, ctx.n_layers + 1) for u in range(ctx.n_layers + 1))
    return g
