"""Lesion studies: which edges of a trained DAG matter, measured by test-time knockout.

Removing edge u -> v zeroes u's channels at v's input (the reader's BN then sees zeros, in
eval mode with its running statistics); every other weight is unchanged. The rise of the
validation error on a fixed subset, in percentage points (connectome.analysis.units), is the edge's
importance. Every edge of a DenseNet-40 would take
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
from typing import Iterator

import networkx as nx
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from connectome.analysis.units import format_points
from connectome.errors import ConfigError
from connectome.executor import Block, ConnectomeNet
from connectome.store.layout import StudyDir, TrialFiles, read_trial_config
from connectome.topology import node_depths

EdgeId = tuple[int, int, int]  # block index (from 0), source, reader
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
def knockout(model: ConnectomeNet, edges: list[EdgeId]) -> Iterator[None]:
    """Within the context, each edge's source is zeroed at its reader's input."""
    by_reader: dict[tuple[int, int], set[int]] = {}
    for b, u, v in edges:
        by_reader.setdefault((b, v), set()).add(u)
    with ExitStack() as stack:
        for b in {b for b, _, _ in edges}:
            stack.enter_context(explicit_reads(model.blocks[b]))
        for (b, v), sources in by_reader.items():
            block = model.blocks[b]
            if next(s for s in block.plan if s.v == v).ports is not None:  # its inputs bypass the hook
                raise ConfigError(f"block {b + 1}: node {v} has named ports or outputs; lesions of its in-edges "
                                  "are not supported yet")
            positions = [i for i, e in enumerate(block.spec.inputs[v]) if e.src in sources]
            if len(positions) != len(sources):
                raise ConfigError(f"block {b + 1}: node {v} does not read all of {sorted(sources)}")
            handle = block.nodes[str(v)].register_forward_pre_hook(_zeroing(positions))
            stack.callback(handle.remove)
        yield


def _zeroing(positions: list[int]):
    def hook(module, args):
        inputs = list(args[0])
        for i in positions:
            inputs[i] = torch.zeros_like(inputs[i])
        return (inputs,)

    return hook


def edge_spans(model: ConnectomeNet) -> dict[EdgeId, int]:
    """Every edge with its span: depth of the reader minus depth of the source."""
    spans = {}
    for b, block in enumerate(model.blocks):
        g = block.spec.to_graph()
        depth = node_depths(g, list(nx.topological_sort(g)))
        spans.update({(b, e.src, e.dst): depth[e.dst] - depth[e.src] for e in block.spec.edges})
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


@dataclass(frozen=True)
class LesionPlan:
    """What to lesion: span classes first, then single edges in random order, within a budget."""

    budget_s: float = DEFAULT_BUDGET_S
    spans: bool = True
    seed: int = 0


def lesion_model(model: ConnectomeNet, x: torch.Tensor, y: torch.Tensor, plan: LesionPlan = LesionPlan()) -> pd.DataFrame:
    """Rows (kind, block, src, dst, span, n_edges, val_error_pts, baseline_val_error_pts, val_error_rise_pts,
    seconds) per knockout: validation errors in points, and the rise the knockout causes."""
    started = time.perf_counter()
    base = error_pts(model, x, y)
    spans = edge_spans(model)
    rows = []

    def run(kind: str, edges: list[EdgeId], **where) -> None:
        t0 = time.perf_counter()
        with knockout(model, edges):
            error = error_pts(model, x, y)
        rows.append({"kind": kind, **where, "n_edges": len(edges), "val_error_pts": error,
                     "baseline_val_error_pts": base, "val_error_rise_pts": error - base,
                     "seconds": time.perf_counter() - t0})

    groups: dict[tuple[int, str], list[EdgeId]] = {}
    for edge, s in spans.items():
        groups.setdefault((edge[0], span_class(s)), []).append(edge)
    if plan.spans:
        for (b, cls), edges in sorted(groups.items(), key=lambda kv: (kv[0][0], _class_order(kv[0][1]))):
            run("span", edges, block=b + 1, src=None, dst=None, span=cls)
    order = list(spans)
    np.random.default_rng(plan.seed).shuffle(order)
    for b, u, v in order:
        if time.perf_counter() - started > plan.budget_s:
            break
        run("edge", [(b, u, v)], block=b + 1, src=u, dst=v, span=span_class(spans[(b, u, v)]))
    return pd.DataFrame(rows)


def _class_order(cls: str) -> int:
    return int(cls.split("-")[0])


def validation_subset(trial_dir: Path, images: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded subset of the trial's own validation split, normalised as in training."""
    from connectome.training.config import make_trial_config
    from connectome.training.datasets import load_splits

    files = TrialFiles(trial_dir)
    saved = read_trial_config(files)
    if saved is None:
        raise ConfigError(f"{files.config} not found: cannot rebuild the trial's validation split")
    cfg = make_trial_config(saved["config"], source=str(files.config))
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
    fig = plot_lesions(rise_matrices(table, model), _padded(model_usage(model)), title=_title(trial_id, table))
    return out, save_figure(fig, sd.figure(f"lesion_{trial_id}")), table


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
