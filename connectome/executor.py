"""The generic executor: compiles a NetworkSpec into one nn.Module, once.

All modules are created in `__init__`; `forward` is a loop over a precomputed
topological order that slices, aggregates and applies ops, mutating nothing but the
local list of feature maps (freed as soon as their last reader has run).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator, NamedTuple

import networkx as nx
import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from connectome.errors import SpecError, unknown_name
from connectome.ops import HEADS, OPS, STEMS, TRANSITIONS
from connectome.spec import BlockSpec, NetworkSpec

Read = tuple[int, int | None, int | None]  # source node, channel window lo, hi


class GraphNode(nn.Module):
    """One node of a block: aggregate its inputs, then run its op (none for the output)."""

    def __init__(self, agg: str, op: nn.Module | None, memory_efficient: bool = False) -> None:
        super().__init__()
        self.agg = agg
        self.op = op
        self.memory_efficient = memory_efficient
        self._fresh = True  # first call of the checkpointed part in this forward
        self._tail_fresh = True

    def aggregate(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if len(inputs) == 1:
            return inputs[0]
        if self.agg == "concat":
            return torch.cat(inputs, 1)
        out = inputs[0]
        for t in inputs[1:]:
            out = out + t
        return out

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.op is None:
            return self.aggregate(inputs)
        if self.memory_efficient and self.training and any(t.requires_grad for t in inputs):
            self._fresh = True
            h = checkpoint(self._recomputable, *inputs, use_reentrant=False)
            if getattr(self.op, "recompute_tail", False):
                # A bottleneck's second BN-ReLU (4k channels) is recomputed too; the checkpoint
                # stops before the 3x3 conv, whose input is then the last tensor it needs.
                self._tail_fresh = True
                return checkpoint(self._recomputable_tail, h, use_reentrant=False)
        else:
            h = self.op.head(self.aggregate(inputs))
        return self.op.tail(h)

    def _recomputable(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Aggregation + op head; on recomputation BN running stats are left untouched."""
        first, self._fresh = self._fresh, False
        with nullcontext() if first else frozen_norm_stats(self.op):
            return self.op.head(self.aggregate(list(inputs)))

    def _recomputable_tail(self, h: torch.Tensor) -> torch.Tensor:
        """The op's tail; on recomputation BN running stats are left untouched."""
        first, self._tail_fresh = self._tail_fresh, False
        with nullcontext() if first else frozen_norm_stats(self.op):
            return self.op.tail(h)


@contextmanager
def frozen_norm_stats(module: nn.Module) -> Iterator[None]:
    """Restore BN running statistics after the block, so a recomputation counts once."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [[b.clone() for b in m.buffers()] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for live, old in zip(m.buffers(), buffers):
                    live.copy_(old)


class Step(NamedTuple):
    """One node of a block's precomputed plan."""

    v: int
    node: GraphNode
    reads: tuple[Read, ...]  # sources and windows (unused when base is set)
    base: int | None  # sum node whose aggregate + output is this node's aggregate
    keep: bool  # keep this node's aggregate: a later node extends it
    frees: tuple[int, ...]  # feature maps no later step reads
    drops: tuple[int, ...]  # kept aggregates no later step extends


class Block(nn.Module):
    """A block's DAG as modules plus a precomputed plan: order, reads, running sums, frees."""

    def __init__(self, spec: BlockSpec, *, bn_size: int, dropout: float, memory_efficient: bool) -> None:
        super().__init__()
        self.spec = spec
        order = [v for v in nx.lexicographical_topological_sort(spec.to_graph()) if v != 0]
        self.nodes = nn.ModuleDict({str(v): self._make_node(v, bn_size, dropout, memory_efficient) for v in order})
        self.plan = _plan(spec, order, self.nodes)
        self.n_nodes = len(spec.nodes)

    def _make_node(self, v: int, bn_size: int, dropout: float, memory_efficient: bool) -> GraphNode:
        node = self.spec.nodes[v]
        op = None
        if node.op in OPS:
            op = OPS[node.op](self.spec.input_width(v), node.width, bn_size=bn_size, dropout=dropout)
        return GraphNode(node.agg, op, memory_efficient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats: list[torch.Tensor | None] = [None] * self.n_nodes
        sums: dict[int, torch.Tensor] = {}
        feats[0] = x  # (B, C_in, H, W)
        for step in self.plan:
            if step.base is not None:  # running sum: x0 + f1 + ... + f_u
                inputs = [sums[step.base] + feats[step.base]]
            else:
                inputs = [feats[u] if lo is None else feats[u][:, lo:hi] for u, lo, hi in step.reads]
            if step.keep:
                inputs = [step.node.aggregate(inputs)]
                sums[step.v] = inputs[0]
            feats[step.v] = step.node(inputs)
            for u in step.frees:
                feats[u] = None
            for u in step.drops:
                del sums[u]
        return feats[-1]  # (B, C_out, H, W)


def _plan(spec: BlockSpec, order: list[int], nodes: nn.ModuleDict) -> list[Step]:
    """Reads, running-sum bases and the points where maps can be released."""
    bases = {v: u for v in order if (u := _sum_base(spec, v)) is not None}
    used = [(bases[v],) if v in bases else tuple(e.src for e in spec.inputs[v]) for v in order]
    last_read = {u: i for i, srcs in enumerate(used) for u in srcs}
    last_extended = {u: i for i, v in enumerate(order) if (u := bases.get(v)) is not None}
    return [
        Step(v, nodes[str(v)], _reads(spec, v), bases.get(v), v in last_extended,
             tuple(u for u, j in last_read.items() if j == i),
             tuple(u for u, j in last_extended.items() if j == i))
        for i, v in enumerate(order)
    ]


def _sum_base(spec: BlockSpec, v: int) -> int | None:
    """The sum node u whose sources plus u itself are exactly v's sources, if any."""
    if spec.nodes[v].agg != "sum" or any(e.window for e in spec.inputs[v]):
        return None
    sources = {e.src for e in spec.inputs[v]}
    for u in sorted(sources, reverse=True):
        node_u, edges_u = spec.nodes[u], spec.inputs[u]
        if u and node_u.agg == "sum" and not any(e.window for e in edges_u):
            if {e.src for e in edges_u} | {u} == sources:
                return u
    return None


def _reads(spec: BlockSpec, v: int) -> tuple[Read, ...]:
    return tuple((e.src, *(e.window or (None, None))) for e in spec.inputs[v])


class ConnectomeNet(nn.Module):
    """Stem, blocks joined by transitions, head: everything the spec says, nothing more."""

    def __init__(self, spec: NetworkSpec, memory_efficient: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.stem = lookup(STEMS, "stem", spec.stem)(spec.in_channels, spec.stem_channels, dropout=spec.dropout)
        opts = dict(bn_size=spec.bn_size, dropout=spec.dropout, memory_efficient=memory_efficient)
        self.blocks = nn.ModuleList(Block(b, **opts) for b in spec.blocks)
        transition = lookup(TRANSITIONS, "transition", spec.transition)
        self.transitions = nn.ModuleList(
            transition(b.out_channels, c, dropout=spec.dropout) for b, c in zip(spec.blocks, spec.transitions)
        )
        self.head = lookup(HEADS, "head", spec.head)(spec.blocks[-1].out_channels, spec.classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, C0, H, W)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.transitions):
                x = self.transitions[i](x)  # (B, C', H/2, W/2)
        return self.head(x)  # (B, classes)

    def set_memory_efficient(self, enabled: bool) -> ConnectomeNet:
        """Switch every node between storing and recomputing its aggregation + BN + ReLU."""
        for m in self.modules():
            if isinstance(m, GraphNode):
                m.memory_efficient = enabled
        return self

    def source_usage(self) -> list[np.ndarray]:
        """Per block, (layers x sources) l2 norm of first-conv weights per input channel; NaN: no edge."""
        return [_block_usage(block) for block in self.blocks]


def _block_usage(block: Block) -> np.ndarray:
    spec = block.spec
    n = spec.n_layers
    usage = np.full((n, n), np.nan)
    if n != len(spec.nodes) - 2:  # post-activation joins: every layer reads one unit's output
        return usage
    for v in range(1, n + 1):
        node = block.nodes[str(v)]
        weight = node.op.in_conv.weight.detach().float()  # (C_out, C_in, kh, kw)
        start = 0
        for e in spec.inputs[v]:
            width = spec.read_width(e)
            lo = start if node.agg == "concat" else 0
            if e.src < n:
                part = weight[:, lo:lo + width]
                usage[v - 1, e.src] = float(part.norm()) / width**0.5
            start += width
    return usage


def lookup(registry: dict, kind: str, name: str):
    """A registry entry named by a spec, or a SpecError listing the known ones."""
    if name not in registry:
        raise SpecError(unknown_name(kind, name, registry))
    return registry[name]


def init_weights(model: nn.Module) -> None:
    """He initialisation for convs (as in the paper), unit BN, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
