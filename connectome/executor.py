"""The generic executor: compiles a NetworkSpec into one nn.Module, once.

All modules are created in `__init__`; `forward` is a loop over a precomputed
topological order that slices, drops (in training), aggregates and applies ops, mutating
nothing but the local list of feature maps (freed as soon as their last reader has run).
Random drops draw from torch's default CPU generator, once per batch, and only where a spec
asks for them: seeded runs repeat, and evaluation is deterministic.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator, NamedTuple

import networkx as nx
import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from connectome.aggregations import AGGREGATIONS
from connectome.errors import SpecError, unknown_name
from connectome.joins import make_join
from connectome.ops import HEADS, OPS, STEMS, TRANSITIONS
from connectome.spec import BlockSpec, NetworkSpec, op_ports

Read = tuple[int, str, int | None, int | None]  # source node, its output read ("": the main one), window lo, hi


class GraphNode(nn.Module):
    """One node of a block: aggregate its inputs, then run its op (none for the output)."""

    def __init__(self, agg: str, join: nn.Module, op: nn.Module | None, memory_efficient: bool = False,
                 port_joins: dict[str, nn.Module] | None = None, own: dict[str, str] | None = None) -> None:
        super().__init__()
        self.agg = agg
        self.join = join  # the aggregation kind's module (connectome.joins)
        self.single_is_identity = AGGREGATIONS[agg].single_is_identity
        self.op = op
        self.memory_efficient = memory_efficient
        self._fresh = True  # first call of the checkpointed part in this forward
        self._tail_fresh = True
        self.port_joins = nn.Module()  # each named input port's join, by port name (a ModuleDict has `values`)
        for port, join in (port_joins or {}).items():
            self.port_joins.add_module(port, join)
        self.own = own or {}  # ports whose aggregate starts with the op's own output of that name

    def aggregate(self, inputs: list[torch.Tensor], join: nn.Module | None = None) -> torch.Tensor:
        join = self.join if join is None else join
        if len(inputs) == 1 and AGGREGATIONS[join.kind].single_is_identity:
            return inputs[0]
        return join(inputs)

    def forward_ports(self, inputs: list[torch.Tensor], ports: tuple[str, ...]) -> tuple[torch.Tensor, dict]:
        """A node with named ports: each port aggregated on its own; the op returns its output and named outputs."""
        grouped: dict[str, list[torch.Tensor]] = {}
        for t, p in zip(inputs, ports):
            grouped.setdefault(p, []).append(t)
        joins = self.port_joins._modules
        streams = {p: self.aggregate(ts, joins[p] if p else None) for p, ts in grouped.items() if p not in self.own}
        late = {p: (lambda mine, p=p: joins[p]([mine, *grouped[p]])) for p in self.own if p in grouped}
        return self.op.forward_ports(streams, late)

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
    reads: tuple[Read, ...]  # sources, outputs and windows (unused when base is set)
    ports: tuple[str, ...] | None  # the input port each read feeds (None: the node has no named ports)
    base: int | None  # sum node whose aggregate + output is this node's aggregate
    keep: bool  # keep this node's aggregate: a later node extends it
    frees: tuple[int, ...]  # feature maps no later step reads
    drops: tuple[int, ...]  # kept aggregates no later step extends
    wiring: Wiring | None  # drop-path of the in-edges and stochastic depth of the node (None: neither)


class Wiring(NamedTuple):
    """A node's random wiring: per in-edge drop probability and column, its own drop probability."""

    edge_drop: tuple[float, ...]
    columns: tuple[int, ...]
    renormalise: bool  # dropped inputs leave the aggregate (mean) instead of reading zeros
    node_drop: float
    width: int  # of the node's output (zeros when it is dropped)

    def inputs(self, inputs: list[torch.Tensor], training: bool, column: int | None) -> list[torch.Tensor]:
        """The inputs after drop-path: drawn per batch in training; all kept (scaled by survival) in evaluation."""
        if not any(self.edge_drop) and not any(self.columns):
            return inputs
        if not training:
            return inputs if self.renormalise else [t * (1 - p) if p else t for t, p in zip(inputs, self.edge_drop)]
        keep = self._kept(column)
        if self.renormalise:
            return [t for t, k in zip(inputs, keep) if k]
        return [t if k else torch.zeros_like(t) for t, k in zip(inputs, keep)]

    def _kept(self, column: int | None) -> list[bool]:
        """Global drop-path keeps the drawn column (and unlabelled edges); local drops each edge at its rate."""
        if column is not None and column in self.columns:
            return [c in (0, column) for c in self.columns]
        if column is not None and any(self.columns):  # no input of the drawn column: the output goes unread
            return [True] * len(self.columns)
        draws = torch.rand(len(self.edge_drop)).tolist()
        keep = [r >= p for r, p in zip(draws, self.edge_drop)]
        if self.renormalise and not any(keep):  # FractalNet: at least one input survives, drawn uniformly
            keep[int(torch.randint(len(keep), ()))] = True
        return keep

    def output_dropped(self, training: bool) -> bool:
        """Stochastic depth: in training, whether this batch zeroes the node's output."""
        return training and self.node_drop > 0 and float(torch.rand(())) < self.node_drop


class Block(nn.Module):
    """A block's DAG as modules plus a precomputed plan: order, reads, running sums, frees."""

    def __init__(self, spec: BlockSpec, *, bn_size: int, dropout: float, memory_efficient: bool,
                 channel_dim: int = 1, op_options: dict | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.channel_dim = channel_dim  # 1 for (B, C, H, W) maps, -1 for (B, T, C) tokens
        self.op_options = op_options or {}  # the family's keyword options of every op
        order = [v for v in nx.lexicographical_topological_sort(spec.to_graph()) if v != 0]
        self.nodes = nn.ModuleDict({str(v): self._make_node(v, bn_size, dropout, memory_efficient) for v in order})
        self.plan = _plan(spec, order, self.nodes)
        self.n_nodes = len(spec.nodes)

    def _make_node(self, v: int, bn_size: int, dropout: float, memory_efficient: bool) -> GraphNode:
        node, spec = self.spec.nodes[v], self.spec
        op = None
        ported = {"ports": tuple(p for p, _, _ in node.ports)} if node.ports else {}
        if node.op in OPS:
            op = OPS[node.op](spec.input_width(v), node.width, bn_size=bn_size, dropout=dropout, **self.op_options,
                              **ported)
        by_port = spec.port_inputs(v)
        own = dict(op_ports(node.op).own) if node.ports else {}
        joins = {p: self._join(v, p, by_port[p], own=p in own) for p, _, _ in node.ports}
        join = self._join(v, "", by_port.get("", ()))
        return GraphNode(node.agg, join, op, memory_efficient, joins, {p: own[p] for p in joins if p in own})

    def _join(self, v: int, port: str, edges: tuple, own: bool = False) -> nn.Module:
        """The join of one input port of node v ("": the default input); `own`: the op's own output joins first."""
        node = self.spec.nodes[v]
        agg, options = node.port_kind(port)
        carry = next((i for i, e in enumerate(edges) if e.carry), 0)
        width = self.spec.read_width(edges[0]) if edges else node.width
        return make_join(agg, n_inputs=len(edges) + own, width=width, carry=carry, options=options,
                         dim=self.channel_dim)

    def forward(self, x: torch.Tensor, column: int | None = None) -> torch.Tensor:
        """The block's output; `column`: the column global drop-path keeps in this batch (None: local drops)."""
        feats: list[torch.Tensor | None] = [None] * self.n_nodes
        sums: dict[int, torch.Tensor] = {}
        named: dict[tuple[int, str], torch.Tensor] = {}  # named outputs (an attention node's values)
        feats[0] = x  # (B, C_in, H, W) or (B, T, C_in)
        for step in self.plan:
            if step.base is not None:  # running sum: x0 + f1 + ... + f_u
                inputs = [sums[step.base] + feats[step.base]]
            else:
                inputs = [self._read(named[u, out] if out else feats[u], lo, hi) for u, out, lo, hi in step.reads]
            if step.ports is not None:
                feats[step.v], outputs = step.node.forward_ports(inputs, step.ports)
                named.update(((step.v, k), t) for k, t in outputs.items())
            else:
                feats[step.v] = self._run(step, inputs, sums, column)
            for u in step.frees:
                feats[u] = None
            for u in step.drops:
                del sums[u]
        return feats[-1]  # (B, C_out, H, W)

    def _read(self, t: torch.Tensor, lo: int | None, hi: int | None) -> torch.Tensor:
        return t if lo is None else t.narrow(self.channel_dim, lo, hi - lo)

    def _run(self, step: Step, inputs: list[torch.Tensor], sums: dict, column: int | None) -> torch.Tensor:
        """One node: drop-path on its inputs, aggregate (kept for running sums), op, stochastic depth."""
        wiring = step.wiring
        dropped = wiring is not None and wiring.output_dropped(self.training)
        if wiring is not None:
            inputs = wiring.inputs(inputs, self.training, column)
        if step.keep:  # a later running sum extends this aggregate, dropped or not
            inputs = [step.node.aggregate(inputs)]
            sums[step.v] = inputs[0]
        if dropped:  # the op is skipped, as in Huang et al. 2016
            shape = list(inputs[0].shape)
            shape[self.channel_dim] = wiring.width
            return inputs[0].new_zeros(shape)
        out = step.node(inputs)
        if wiring is not None and wiring.node_drop and not self.training:
            out = out * (1 - wiring.node_drop)  # the expected output: scaled by the survival probability
        return out


def _plan(spec: BlockSpec, order: list[int], nodes: nn.ModuleDict) -> list[Step]:
    """Reads, running-sum bases and the points where maps can be released."""
    bases = {v: u for v in order if (u := _sum_base(spec, v)) is not None}
    used = [(bases[v],) if v in bases else tuple(e.src for e in spec.inputs[v]) for v in order]
    last_read = {u: i for i, srcs in enumerate(used) for u in srcs}
    last_extended = {u: i for i, v in enumerate(order) if (u := bases.get(v)) is not None}
    return [
        Step(v, nodes[str(v)], _reads(spec, v), _ports(spec, v), bases.get(v), v in last_extended,
             tuple(u for u, j in last_read.items() if j == i),
             tuple(u for u, j in last_extended.items() if j == i), _wiring(spec, v))
        for i, v in enumerate(order)
    ]


def _wiring(spec: BlockSpec, v: int) -> Wiring | None:
    """Node v's drop-path and stochastic depth, or None when it has neither."""
    edges, node = spec.inputs[v], spec.nodes[v]
    if not node.drop and not any(e.drop or e.column for e in edges):
        return None
    return Wiring(tuple(e.drop for e in edges), tuple(e.column for e in edges),
                  AGGREGATIONS[node.agg].renormalise, node.drop, node.width)


def _sum_base(spec: BlockSpec, v: int) -> int | None:
    """The sum node u whose sources plus u itself are exactly v's sources, if any (no edge drops)."""
    if spec.nodes[v].agg != "sum" or _ports(spec, v) is not None or any(_special(e) for e in spec.inputs[v]):
        return None
    sources = {e.src for e in spec.inputs[v]}
    for u in sorted(sources, reverse=True):
        node_u, edges_u = spec.nodes[u], spec.inputs[u]
        if u and node_u.agg == "sum" and _ports(spec, u) is None and not any(_special(e) for e in edges_u):
            if {e.src for e in edges_u} | {u} == sources:
                return u
    return None


def _special(e) -> bool:
    """An edge a running sum cannot stand for: windowed, dropped, or from a named output or into a named port."""
    return bool(e.window or e.drop or e.out or e.port)


def _reads(spec: BlockSpec, v: int) -> tuple[Read, ...]:
    return tuple((e.src, e.out, *(e.window or (None, None))) for e in spec.inputs[v])


def _ports(spec: BlockSpec, v: int) -> tuple[str, ...] | None:
    """The port each of v's in-edges feeds, or None when v has no named ports and no named output is read."""
    ported = spec.nodes[v].ports or v in spec.named_output_sources
    return tuple(e.port for e in spec.inputs[v]) if ported else None


class ConnectomeNet(nn.Module):
    """Stem, blocks joined by transitions, head: everything the spec says, nothing more."""

    def __init__(self, spec: NetworkSpec, memory_efficient: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.stem = lookup(STEMS, "stem", spec.stem)(spec.in_channels, spec.stem_channels, dropout=spec.dropout)
        opts = dict(bn_size=spec.bn_size, memory_efficient=memory_efficient, channel_dim=spec.channel_dim,
                    op_options=dict(spec.op_options))
        self.blocks = nn.ModuleList(Block(b, dropout=p, **opts) for b, p in zip(spec.blocks, spec.layer_dropout))
        self.transitions = nn.ModuleList(
            lookup(TRANSITIONS, "transition", spec.transition_kind(i))(b.out_channels, c, dropout=spec.dropout)
            for i, (b, c) in enumerate(zip(spec.blocks, spec.transitions))
        )
        self.head = lookup(HEADS, "head", spec.head)(spec.blocks[-1].out_channels, spec.classes, dropout=spec.dropout)
        if hasattr(self.head, "tie"):  # a head that shares the stem's weights (a tied LM head)
            self.head.tie(self.stem)
        # Global drop-path: the column labels a batch may keep (FractalNet: one column for the whole network).
        self.columns = sorted(set().union(*(b.columns for b in spec.blocks if b.global_drop)))
        init_weights(self)
        if memory_efficient:
            check_memory_efficient(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        draw, column = (float(torch.rand(())), self._column()) if self.training and self.columns else (1.0, None)
        x = self.stem(x)  # (B, C0, H, W), or (B, T, C0) from (B, T) tokens
        for i, block in enumerate(self.blocks):
            x = block(x, column if draw < block.spec.global_drop else None)
            if i < len(self.transitions):
                x = self.transitions[i](x)  # (B, C', H/2, W/2)
        return self.head(x)  # (B, classes)

    def _column(self) -> int:
        """The column global drop-path keeps in this batch, uniformly among the labels."""
        return self.columns[int(torch.randint(len(self.columns), ()))]

    def set_memory_efficient(self, enabled: bool) -> ConnectomeNet:
        """Switch every node between storing and recomputing its aggregation + BN + ReLU."""
        if enabled:
            check_memory_efficient(self.spec)
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


def check_memory_efficient(spec: NetworkSpec) -> None:
    """SpecError naming the first node whose aggregation kind memory-efficient mode cannot recompute."""
    for i, block in enumerate(spec.blocks):
        for node in block.nodes:
            if node.ports:
                raise SpecError(f"memory-efficient mode does not support named ports (block {i + 1}, node {node.id})")
            if not AGGREGATIONS[node.agg].memory_efficient:
                supported = ", ".join(sorted(k for k, a in AGGREGATIONS.items() if a.memory_efficient))
                raise SpecError(f"memory-efficient mode does not support aggregation {node.agg!r} (block {i + 1}, "
                                f"node {node.id}); supported: {supported}")


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
        elif isinstance(m, nn.Linear) and m.bias is not None:  # decoder projections have none
            nn.init.zeros_(m.bias)
