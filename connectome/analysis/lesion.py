"""Lesion studies: which edges of a trained DAG matter, measured by test-time knockout.

Removing edge u -> v zeroes u's channels at v's input (the reader's BN then sees zeros, in
eval mode with its running statistics); every other weight is unchanged. An edge into a named
input port (MUDDFormer's q, k, v, r) is cut the same way inside that port: the port's aggregation
runs over its inputs with the cut one read as zeros, whatever its kind (no renormalisation: a mean
still divides by all its inputs, learned and per-token weights are applied as they are). One stream
of a multi-stream state (Hyper-Connections' streams, Frac-Connections' fractions) is cut by zeroing
its channels wherever a stream kind reads the state. The rise of the validation error on a fixed
subset, in percentage points (connectome.analysis.units), or of a language model's validation bits
per byte on its fixed validation windows, is the edge's importance. Every edge of a DenseNet-40 would take
hours on a CPU, so `lesion_trial` first removes whole span classes (every edge of span 1, 2,
3-4, 5-8, ... in one block), then single edges in a seeded random order until a time budget is
spent. The executor is not changed: `knockout` swaps a block's plan for one that reads every
source explicitly (no running sums) and zeroes inputs with forward pre-hooks.
"""
from __future__ import annotations

import math
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import networkx as nx
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from connectome.aggregations import AGGREGATIONS
from connectome.analysis.units import format_points
from connectome.errors import ConfigError
from connectome.executor import Block, ConnectomeNet
from connectome.store.layout import StudyDir, TrialFiles, read_trial_config
from connectome.topology import node_depths

# (block index from 0, source, reader): every edge u -> v; with a 4th item, the port: only the edge into that port.
EdgeId = tuple
StreamId = tuple[int, int]  # block index (from 0), stream (from 0)
Cut = dict[int, "tuple[int, int] | None"]  # input position -> channels [lo, hi) zeroed there (None: all)
DEFAULT_IMAGES = 1000
DEFAULT_BUDGET_S = 120.0


@contextmanager
def explicit_reads(block: Block) -> Iterator[None]:
    """The block reads every source of every node (running sums off): same function, hookable inputs."""
    saved = block.plan
    block.plan = [s._replace(base=None, keep=False, frees=(), drops=()) for s in saved]
    try:
        yield
    finally:
        block.plan = saved


@contextmanager
def knockout(model: ConnectomeNet, edges: list[EdgeId], streams: list[StreamId] = ()) -> Iterator[None]:
    """Within the context, each edge's source is zeroed at its reader's input (in its port), and each
    stream's channels wherever its block's stream kinds read the state."""
    cuts: dict[tuple[int, int], Cut] = {}
    for edge in edges:
        b, v = edge[0], edge[2]
        cuts.setdefault((b, v), {}).update(dict.fromkeys(_edge_positions(model.blocks[b].spec, edge)))
    for b, j in streams:
        for v, channels in _stream_channels(model.blocks[b].spec, j).items():
            cuts.setdefault((b, v), {})[0] = channels
    with ExitStack() as stack:
        for b in {b for b, _ in cuts}:
            stack.enter_context(explicit_reads(model.blocks[b]))
        for (b, v), cut in cuts.items():
            stack.enter_context(_zeroed_inputs(model.blocks[b], v, cut))
        yield


def _edge_positions(spec, edge: EdgeId) -> list[int]:
    """The input positions of reader v that edge u -> v (into its port, when given) feeds."""
    b, u, v, *port = edge
    positions = [i for i, e in enumerate(spec.inputs[v]) if e.src == u and (not port or e.port == port[0])]
    if not positions:
        into = f" into port {port[0]!r}" if port else ""
        raise ConfigError(f"block {b + 1}: node {v} does not read node {u}{into}")
    return positions


def block_streams(spec) -> int:
    """The stream (or fraction) count of a block's multi-stream state; 0: the block has none."""
    for node in spec.nodes:
        option = AGGREGATIONS[node.agg].stream_option
        if option:
            return int(dict(node.options)[option])
    return 0


def _stream_channels(spec, j: int) -> dict[int, tuple[int, int]]:
    """Reader -> the channels of stream j in the state its first in-edge carries, for every stream kind's node."""
    n = block_streams(spec)
    if not 0 <= j < n:
        raise ConfigError(f"stream {j}: the block has {n} streams (0..{n - 1})" if n else
                          f"stream {j}: the block has no multi-stream state")
    readers = {}
    for node in spec.nodes:
        if AGGREGATIONS[node.agg].stream_option and spec.inputs[node.id]:
            width = spec.read_width(spec.inputs[node.id][0]) // n
            readers[node.id] = (j * width, (j + 1) * width)
    return readers


@contextmanager
def _zeroed_inputs(block: Block, v: int, cut: Cut) -> Iterator[None]:
    """Node v's inputs zeroed as `cut` says: by a forward pre-hook, or around forward_ports for a ported node."""
    node, dim = block.nodes[str(v)], block.channel_dim
    if next(s for s in block.plan if s.v == v).ports is None:
        handle = node.register_forward_pre_hook(lambda module, args: (_zeroed(list(args[0]), cut, dim),))
        try:
            yield
        finally:
            handle.remove()
        return
    ported = node.forward_ports
    node.forward_ports = lambda inputs, ports: ported(_zeroed(list(inputs), cut, dim), ports)
    try:
        yield
    finally:
        del node.forward_ports  # the class's method again


def _zeroed(inputs: list[torch.Tensor], cut: Cut, dim: int) -> list[torch.Tensor]:
    """The inputs with the cut positions (or their channels [lo, hi)) set to zero; the others as they are."""
    for i, channels in cut.items():
        if channels is None:
            inputs[i] = torch.zeros_like(inputs[i])
        else:
            inputs[i] = inputs[i].clone()
            inputs[i].narrow(dim, channels[0], channels[1] - channels[0]).zero_()
    return inputs


def edge_spans(model: ConnectomeNet) -> dict[EdgeId, int]:
    """Every edge with its span: depth of the reader minus depth of the source (an edge into a port: its own id)."""
    spans = {}
    for b, block in enumerate(model.blocks):
        g = block.spec.to_graph()
        depth = node_depths(g, list(nx.topological_sort(g)))
        spans.update({(b, e.src, e.dst, *([e.port] if e.port else [])): depth[e.dst] - depth[e.src]
                      for e in block.spec.edges})
    return spans


def span_class(span: int) -> str:
    """1, 2, 3-4, 5-8, 9-16, ...: powers of two."""
    if span <= 2:
        return str(span)
    hi = 2 ** math.ceil(math.log2(span))
    return f"{hi // 2 + 1}-{hi}"


@torch.no_grad()
def error_pts(model: ConnectomeNet, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Error on normalised images in percentage points (100 x the fraction misclassified)."""
    model.eval()
    wrong = sum(int((model(x[i:i + batch]).argmax(1) != y[i:i + batch]).sum()) for i in range(0, len(y), batch))
    return 100.0 * wrong / len(y)


@torch.no_grad()
def bits_per_byte(model: ConnectomeNet, x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> float:
    """A language model's mean next-byte cross-entropy over (W, T) windows, in bits per byte."""
    model.eval()
    nats = sum(float(F.cross_entropy(model(x[i:i + batch]).float().flatten(0, 1), y[i:i + batch].flatten(),
                                     reduction="sum")) for i in range(0, len(y), batch))
    return nats / y.numel() / math.log(2.0)


class Metric(NamedTuple):
    """What a knockout costs: the table's column, its baseline's, its rise's, and how it is measured."""

    column: str
    rise: str
    measure: Callable[[ConnectomeNet, torch.Tensor, torch.Tensor], float]


# By the network's layout: image classifiers lose accuracy, language models bits per byte.
METRICS = {"maps": Metric("val_error_pts", "val_error_rise_pts", error_pts),
           "tokens": Metric("val_bpb", "val_bpb_rise", bits_per_byte)}


@dataclass(frozen=True)
class LesionPlan:
    """What to lesion: span classes first, then single edges in random order, within a budget."""

    budget_s: float = DEFAULT_BUDGET_S
    spans: bool = True
    seed: int = 0
    streams: bool = True  # each stream of a multi-stream state, after the span classes


def lesion_model(model: ConnectomeNet, x: torch.Tensor, y: torch.Tensor, plan: LesionPlan = LesionPlan()) -> pd.DataFrame:
    """Rows (kind, block, src, dst, port, span, n_edges, the metric, its baseline, its rise, seconds) per
    knockout: image classifiers in validation error points (val_error_pts, baseline_val_error_pts,
    val_error_rise_pts), language models in validation bits per byte (val_bpb, baseline_val_bpb, val_bpb_rise);
    kind span (a span class), stream (one stream of a block's multi-stream state, `stream`) or edge."""
    started = time.perf_counter()
    metric = METRICS[model.spec.layout]
    base = metric.measure(model, x, y)
    spans = edge_spans(model)
    rows = []

    def run(kind: str, edges: list[EdgeId], streams: list[StreamId] = (), **where) -> None:
        t0 = time.perf_counter()
        with knockout(model, edges, streams):
            value = metric.measure(model, x, y)
        rows.append({"kind": kind, **where, "n_edges": len(edges), metric.column: value,
                     f"baseline_{metric.column}": base, metric.rise: value - base,
                     "seconds": time.perf_counter() - t0})

    groups: dict[tuple[int, str], list[EdgeId]] = {}
    for edge, s in spans.items():
        groups.setdefault((edge[0], span_class(s)), []).append(edge)
    if plan.spans:
        for (b, cls), edges in sorted(groups.items(), key=lambda kv: (kv[0][0], _class_order(kv[0][1]))):
            run("span", edges, block=b + 1, src=None, dst=None, port=None, span=cls)
    for b, block in enumerate(model.blocks):
        for j in range(block_streams(block.spec) if plan.streams else 0):
            run("stream", [], [(b, j)], block=b + 1, src=None, dst=None, port=None, span=None, stream=j)
    order = list(spans)
    np.random.default_rng(plan.seed).shuffle(order)
    for edge in order:
        if time.perf_counter() - started > plan.budget_s:
            break
        b, u, v, *port = edge
        run("edge", [edge], block=b + 1, src=u, dst=v, port=port[0] if port else "", span=span_class(spans[edge]))
    return pd.DataFrame(rows)


def _class_order(cls: str) -> int:
    return int(cls.split("-")[0])


def trial_config(trial_dir: Path):
    """The trial's validated TrialConfig, read from its config.json."""
    from connectome.training.config import make_trial_config

    files = TrialFiles(trial_dir)
    saved = read_trial_config(files)
    if saved is None:
        raise ConfigError(f"{files.config} not found: cannot rebuild the trial's validation split")
    return make_trial_config(saved["config"], source=str(files.config))


def validation_windows(trial_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A language model's fixed validation windows as training evaluated them: inputs and next bytes, (W, T) each."""
    from connectome.training.lm import corpus_parts, eval_windows

    cfg = trial_config(trial_dir)
    rows = eval_windows(corpus_parts(cfg)["val"], cfg).long()  # (W, context + 1)
    return rows[:, :-1], rows[:, 1:]


def validation_subset(trial_dir: Path, images: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded subset of the trial's own validation split, normalised as in training."""
    from connectome.training.datasets import load_splits

    cfg = trial_config(trial_dir)
    data = load_splits(cfg.data, cfg.seed, "cpu")
    if len(data.val_y) == 0:
        raise ConfigError(f"trial {trial_dir.name} has no validation split (data.val_size 0): "
                          "lesions are measured on validation data only")
    idx = torch.randperm(len(data.val_y), generator=torch.Generator().manual_seed(seed))[:images]
    return data.normalize(data.val_x[idx]), data.val_y[idx]


def lesion_trial(trial_dir: str | Path, images: int = DEFAULT_IMAGES, plan: LesionPlan = LesionPlan()) -> pd.DataFrame:
    """Lesion table of one trained trial folder (spec.json, model.pt, config.json)."""
    from connectome.analysis.usage import load_trial_model

    trial_dir = Path(trial_dir)
    model = load_trial_model(trial_dir)
    if model.spec.layout == "tokens":  # a language model: all its fixed validation windows (`images` unused)
        x, y = validation_windows(trial_dir)
        return lesion_model(model, x, y, plan).assign(trial_id=trial_dir.name, n_windows=len(y))
    x, y = validation_subset(trial_dir, images, plan.seed)
    table = lesion_model(model, x, y, plan)
    return table.assign(trial_id=trial_dir.name, n_images=len(y))


def rise_matrices(table: pd.DataFrame, model: ConnectomeNet) -> list[np.ndarray]:
    """Per block, (readers 1..n+1) x (sources 0..n) validation error rise (points) of single-edge lesions;
    NaN: not measured."""
    out = []
    for b, block in enumerate(model.blocks, start=1):
        n = block.spec.n_layers
        m = np.full((n + 1, n + 1), np.nan)
        edges = table[(table["kind"] == "edge") & (table["block"] == b)]
        for row in edges.itertuples():
            m[int(row.dst) - 1, int(row.src)] = row.val_error_rise_pts
        out.append(m)
    return out


def plot_lesions(rises: list[np.ndarray], usage: list[np.ndarray], title: str = "") -> Figure:
    """Per block: weight-norm source usage (left) beside the validation error rise of each lesioned edge (right)."""
    n_blocks = len(rises)
    fig = Figure(figsize=(8.0, 3.4 * n_blocks), layout="constrained")
    axes = fig.subplots(n_blocks, 2, squeeze=False)
    vmax = max([np.nanmax(np.abs(r)) for r in rises if np.isfinite(r).any()] + [0.1])
    for b, (rise, use) in enumerate(zip(rises, usage)):
        left, right = axes[b]
        im = left.imshow(np.ma.masked_invalid(use), cmap="viridis", vmin=0, vmax=1)
        left.set_title(f"block {b + 1}: first-conv weight norm (row max = 1)", fontsize=9)
        fig.colorbar(im, ax=left, shrink=0.8)
        im = right.imshow(np.ma.masked_invalid(rise), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        right.set_title(f"block {b + 1}: val error rise (points) when the edge is cut", fontsize=9)
        fig.colorbar(im, ax=right, shrink=0.8, label="validation error rise, points")
        _annotate(right, rise)
        for ax in (left, right):
            _label_axes(ax, rise.shape[0])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _label_axes(ax, size: int) -> None:
    """Rows are readers 1..n and the block output; columns are sources: the block input, 1..n. Grey: no edge."""
    ax.set_facecolor("0.85")
    ax.set_xticks(range(size), ["in", *map(str, range(1, size))], fontsize=7)
    ax.set_yticks(range(size), [*map(str, range(1, size)), "out"], fontsize=7)
    ax.set_xlabel("source")
    ax.set_ylabel("reader")


def _annotate(ax, rise: np.ndarray) -> None:
    """Rises (and falls) of at least half a point written in the cell, in percentage points."""
    for (r, c), value in np.ndenumerate(rise):
        if np.isfinite(value) and abs(value) >= 0.5:
            ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=6)


def write_lesions(results_dir: str | Path, trial_id: str | None = None, images: int = DEFAULT_IMAGES,
                  plan: LesionPlan = LesionPlan()) -> tuple[Path, list[Path], pd.DataFrame]:
    """lesion.parquet and figures/lesion_<trial>.png/.svg for one trial (default: lowest validation error)."""
    from connectome.analysis.figures import save_figure
    from connectome.analysis.usage import load_trial_model, model_usage

    results_dir = Path(results_dir)
    trial_id = trial_id or best_trial(results_dir)
    sd = StudyDir(results_dir)
    trial_dir = sd.trial(trial_id).dir
    if not trial_dir.is_dir():
        raise ConfigError(f"no trial {trial_id!r} in {sd.trials}")
    table = lesion_trial(trial_dir, images, plan)
    out = sd.lesion_file
    table.to_parquet(out)
    model = load_trial_model(trial_dir)
    if model.spec.layout == "tokens":
        fig = plot_decoder_lesions(table, title=f"trial {trial_id}: {len(table[table.kind == 'edge'])} edges "
                                   f"lesioned on {table.n_windows.iloc[0]} validation windows\n(baseline "
                                   f"{table['baseline_val_bpb'].iloc[0]:.4g} bits per byte)")
    else:
        fig = plot_lesions(rise_matrices(table, model), _padded(model_usage(model)), title=_title(trial_id, table))
    return out, save_figure(fig, sd.figure(f"lesion_{trial_id}")), table


def decoder_rises(table: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
    """Per block, readers (`node`, or `node.port` for an edge into a named port) by sources: the validation
    bits-per-byte rise of each single-edge lesion (NaN: not measured)."""
    edges = table[table["kind"] == "edge"]
    edges = edges.assign(reader=[f"{int(v)}.{p}" if p else str(int(v)) for v, p in zip(edges["dst"], edges["port"])])
    out = []
    for b, rows in edges.groupby("block", sort=True):
        order = rows.sort_values(["dst", "port"]).drop_duplicates("reader")["reader"]
        m = rows.pivot(index="reader", columns="src", values="val_bpb_rise").sort_index(axis=1)
        out.append((int(b), m.loc[order]))
    return out


def plot_decoder_lesions(table: pd.DataFrame, title: str = "") -> Figure:
    """Per block: the validation bits-per-byte rise of each lesioned edge (reader[.port] x source); the
    rise of each lesioned stream in the panel's title."""
    panels = decoder_rises(table)
    tall = [max(2.4, 0.28 * m.shape[0] + 1.4) for _, m in panels]
    fig = Figure(figsize=(max(5.0, 0.35 * max(m.shape[1] for _, m in panels) + 2.5), sum(tall)),
                 layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=tall)[:, 0]
    vmax = max([float(np.nanmax(np.abs(m.to_numpy(float)))) for _, m in panels] + [1e-3])
    streams = table[table["kind"] == "stream"]
    for ax, (b, rise) in zip(axes, panels):
        values = rise.to_numpy(float)
        im = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        if values.size <= 160:  # small maps: each rise written in its cell
            for (r, c), value in np.ndenumerate(values):
                if np.isfinite(value):
                    ax.text(c, r, f"{value:+.2g}", ha="center", va="center", fontsize=6,
                            color="white" if abs(value) > 0.6 * vmax else "black")
        ax.set_facecolor("0.85")
        ax.set_xticks(range(rise.shape[1]), ["in" if u == 0 else str(int(u)) for u in rise.columns], fontsize=7)
        ax.set_yticks(range(rise.shape[0]), list(rise.index), fontsize=7)
        ax.set_xlabel("source")
        ax.set_ylabel("reader (.port)")
        cut = streams[streams["block"] == b]
        words = "\nstreams cut: " + ", ".join(f"{int(r.stream)} {r.val_bpb_rise:+.3g}" for r in cut.itertuples()) \
            if len(cut) else ""
        ax.set_title(f"block {b}: val bits per byte rise when the edge is cut{words}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8, label="validation bits per byte rise")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _title(trial_id: str, table: pd.DataFrame) -> str:
    """The figure's title: the trial, what was lesioned, and the baseline error in points."""
    base = format_points(float(table["baseline_val_error_pts"].iloc[0]))
    return (f"trial {trial_id}: {len(table[table.kind == 'edge'])} edges lesioned on {table.n_images.iloc[0]} "
            f"val images (baseline val error {base} points)")


def _padded(usage: list[np.ndarray]) -> list[np.ndarray]:
    """Usage matrices (n x n) padded to the lesion matrices' (n+1) x (n+1) with NaN."""
    return [np.pad(u, ((0, 1), (0, 1)), constant_values=np.nan) for u in usage]


def best_trial(results_dir: Path) -> str:
    """The completed trial with a saved model and the lowest validation error (selection on validation)."""
    from connectome.analysis import load

    completed = load(results_dir).completed()
    if "best_val_acc" in completed:
        completed = completed.sort_values("best_val_acc", ascending=False, kind="stable")
    for trial_id in completed.get("trial_id", []):
        if StudyDir(results_dir).trial(str(trial_id)).model.exists():
            return str(trial_id)
    raise ConfigError(f"{results_dir} has no completed trial with a saved model.pt to lesion")
