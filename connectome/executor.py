"""The generic executor: compiles a NetworkSpec into one nn.Module, once.

All modules are created in `__init__`; `forward` is a loop over a precomputed
topological order that slices, aggregates and applies ops, mutating nothing but the
local list of feature maps (freed as soon as their last reader has run).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import networkx as nx
import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from connectome.ops import OPS, STEMS, Head, Transition
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
        else:
            h = self.op.head(self.aggregate(inputs))
        return self.op.tail(h)

    def _recomputable(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Aggregation + op head; on recomputation BN running stats are left untouched."""
        first, self._fresh = self._fresh, False
        with nullcontext() if first else frozen_norm_stats(self.op):
            return self.op.head(self.aggregate(list(inputs)))


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


class Block(nn.Module):
    """A block's DAG as modules plus a precomputed plan: order, reads, and frees."""

    def __init__(self, spec: BlockSpec, *, bn_size: int, dropout: float, memory_efficient: bool) -> None:
        super().__init__()
        self.spec = spec
        order = [v for v in nx.lexicographical_topological_sort(spec.to_graph()) if v != 0]
        self.nodes = nn.ModuleDict({str(v): self._make_node(v, bn_size, dropout, memory_efficient) for v in order})
        self.plan = [(v, self.nodes[str(v)], _reads(spec, v), _frees(spec, order, i)) for i, v in enumerate(order)]
        self.n_nodes = len(spec.nodes)

    def _make_node(self, v: int, bn_size: int, dropout: float, memory_efficient: bool) -> GraphNode:
        node = self.spec.nodes[v]
        op = None
        if node.op in OPS:
            op = OPS[node.op](self.spec.input_width(v), node.width, bn_size=bn_size, dropout=dropout)
        return GraphNode(node.agg, op, memory_efficient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats: list[torch.Tensor | None] = [None] * self.n_nodes
        feats[0] = x  # (B, C_in, H, W)
        for v, node, reads, frees in self.plan:
            feats[v] = node([feats[u] if lo is None else feats[u][:, lo:hi] for u, lo, hi in reads])
            for u in frees:
                feats[u] = None
        return feats[-1]  # (B, C_out, H, W)


def _reads(spec: BlockSpec, v: int) -> tuple[Read, ...]:
    return tuple((e.src, *(e.window or (None, None))) for e in spec.inputs[v])


def _frees(spec: BlockSpec, order: list[int], i: int) -> tuple[int, ...]:
    """Nodes whose last reader is order[i]: their maps can be dropped after it runs."""
    last_reader: dict[int, int] = {}
    for pos, v in enumerate(order):
        for e in spec.inputs[v]:
            last_reader[e.src] = pos
    return tuple(u for u, pos in last_reader.items() if pos == i)


class ConnectomeNet(nn.Module):
    """Stem, blocks joined by transitions, head: everything the spec says, nothing more."""

    def __init__(self, spec: NetworkSpec, memory_efficient: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.stem = STEMS[spec.stem](spec.in_channels, spec.stem_channels)
        opts = dict(bn_size=spec.bn_size, dropout=spec.dropout, memory_efficient=memory_efficient)
        self.blocks = nn.ModuleList(Block(b, **opts) for b in spec.blocks)
        self.transitions = nn.ModuleList(
            Transition(b.out_channels, c) for b, c in zip(spec.blocks, spec.transitions)
        )
        self.head = Head(spec.blocks[-1].out_channels, spec.classes)
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
