"""The paper's figures from result frames, drawn on matplotlib `Figure` objects (no pyplot state).

Each `plot_*` returns a `Figure`; `save_figure` writes it as PNG and SVG. Figures are built
with the object API and the Agg canvas, so they work headless and in worker threads.
"""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from connectome.analysis.results import MACS, factor_columns
from connectome.analysis.stats import configurations, crossed_factors, pareto, summarize
from connectome.analysis.units import is_language_model, is_points, level_text, words
from connectome.files import write_atomic

# Factors that change a network's size: a study varying one within a pattern draws curves.
SIZE_FACTORS = ("depth", "growth", "block_layers", "blocks", "sublayers", "budget", "budget.params",
                "pattern_options.max_span")  # the span pattern: longer reach, more input channels
LABELS = {
    "params": "parameters",
    MACS: "multiply-adds (MACs) per image",
    "test_error": "test error",
    "test_acc": "test accuracy",
    "best_val_acc": "best validation accuracy",
    "train_loss": "training loss",
    "train_acc": "training accuracy",
    "val_loss": "validation loss",
    "val_acc": "validation accuracy",
    "lr": "learning rate",
    "epoch": "epoch",
}


# A figure's groups beyond matplotlib's 10 colours: tab20 (its dark shades are those 10 colours, then the
# light ones), and a line style and marker per ten groups, so no two groups of a figure look alike.
# Legends of more groups go below the axes (place_legend), each row of two entries this much taller.
INSIDE_LEGEND_MAX = 6
LEGEND_ROW_INCHES = 0.2
LEGEND_COLUMN_INCHES = 4.5
GROUP_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ("-", "v"), ("--", "P"), (":", "X"), ("-.", "*"))


def group_style(i: int, n: int) -> dict[str, str]:
    """Colour, line style and marker of group i of n (matplotlib's C0..C9, solid, circles, for up to 10)."""
    if n <= 10:
        return {"color": f"C{i}", "linestyle": "-", "marker": "o"}
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    shade, hue = divmod(i, 10)
    line, marker = GROUP_STYLES[shade % len(GROUP_STYLES)]
    return {"color": to_hex(colormaps["tab20"].colors[2 * hue + shade % 2]), "linestyle": line, "marker": marker}


# Short names for titles, where the axis label already gives the unit.
SHORT_LABELS = {MACS: "MACs"}


def label(column: str) -> str:
    """Axis label of a result column: `test error (points)` for an error in points."""
    if is_points(column):
        return f"{words(column)} (points)"
    return LABELS.get(column) or (words(column) if column.endswith("_bpb") else column)


def short_label(column: str) -> str:
    """Name of a result column in a title."""
    if is_points(column):
        return words(column)
    return SHORT_LABELS.get(column, label(column))


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write `<stem>.png` and `<stem>.svg`; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path, options in zip(paths, ({"dpi": 130}, {})):  # constrained layout fits labels: no "tight"
        buffer = io.BytesIO()
        fig.savefig(buffer, format=path.suffix[1:], **options)
        write_atomic(path, buffer.getvalue())
    return paths


def plot_error_vs_params(trials: pd.DataFrame, x: str = "params", y: str = "test_error",
                         hue: str = "pattern", joined: bool | None = None) -> Figure:
    """Error against model size per wiring pattern (Figure 5 of arXiv 1608.06993 v1).

    Each marker is a configuration's mean over seeds with its 95% t interval (cut at the
    metric's range); faint dots are single trials. When the study varies size within a
    pattern (depth, growth, ...), a pattern's configurations are joined into a curve;
    otherwise they stay separate dot-and-interval marks. `joined` overrides that choice
    (False for a study whose candidates a parameter budget matched: no size series).
    """
    data = trials.dropna(subset=[x, y])
    curves = varies_size(data, hue) if joined is None else joined
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    groups = list(data.groupby(hue, sort=True))
    for i, (level, group) in enumerate(groups):
        style = group_style(i, len(groups))
        ax.scatter(group[x], group[y], s=14, alpha=0.45, color=style["color"], marker=style["marker"], linewidths=0)
        configs = configurations(group, x=x, y=y).sort_values(x, kind="stable")
        _interval_marks(ax, configs, x, y, style, joined=curves,
                        label=f"{level_text(level)} ({plural(len(group), 'trial')})")
    _size_axis(ax, data[x], x, data)
    ax.set_ylabel(label(y))
    ax.set_title(f"{short_label(y)} vs {short_label(x)} per {hue}")
    ax.grid(alpha=0.3)
    if len(data):
        place_legend(fig, [ax], len(groups), title=hue)
    return fig


def place_legend(fig: Figure, axes: list, groups: int, **options: Any) -> None:
    """A legend in each axes for a few groups; for more, one legend below the axes (the figure grows to hold
    it): inside, a dozen entries covered data points wherever the legend went."""
    if groups <= INSIDE_LEGEND_MAX:
        for ax in axes:
            ax.legend(fontsize=8, **options)
        return
    handles, labels = axes[0].get_legend_handles_labels()
    columns = 2 if fig.get_figwidth() >= 2 * LEGEND_COLUMN_INCHES else 1  # a narrow figure would cut long labels
    fig.set_figheight(fig.get_figheight() + LEGEND_ROW_INCHES * math.ceil(len(labels) / columns))
    fig.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=8, **options)


def varies_size(trials: pd.DataFrame, hue: str = "pattern") -> bool:
    """Whether configurations within a level of `hue` form a size series (only size factors vary).

    Configurations that also differ in another factor (random graphs of several generators, whose
    growth a parameter budget sets) are different networks, not points of one curve.
    """
    if hue not in trials or trials.empty:
        return False
    crossed = crossed_factors(trials, hue)
    return bool(crossed) and all(f in SIZE_FACTORS for f in crossed)


def _interval_marks(ax, configs: pd.DataFrame, x: str, y: str, style: dict[str, str], joined: bool,
                    label: str) -> None:
    """Configuration means with their t interval as bars, joined into a curve if asked."""
    low = (configs[y] - configs["ci_low"]).fillna(0.0).clip(lower=0.0)
    high = (configs["ci_high"] - configs[y]).fillna(0.0).clip(lower=0.0)
    ax.errorbar(configs[x].astype(float), configs[y].astype(float), yerr=[low.to_numpy(), high.to_numpy()],
                ms=5, capsize=3, label=label, **{**style, "linestyle": style["linestyle"] if joined else "none"})


def plot_training_curves(epochs: pd.DataFrame, trials: pd.DataFrame,
                         metrics: tuple[str, ...] = ("train_loss", "val_acc"),
                         hue: str | list[str] = "pattern") -> Figure:
    """Per-epoch curves per group (Figure 6 of arXiv 1608.06993 v1): mean over seeds, band: 95% t interval."""
    hue = [hue] if isinstance(hue, str) else list(hue)
    metrics = tuple(m for m in metrics if m in epochs.columns)
    data = epochs.merge(trials[["trial_id", *hue]], on="trial_id", how="inner")
    fig = Figure(figsize=(5.2 * max(len(metrics), 1), 4.2), layout="constrained")
    axes = fig.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    groups = list(data.groupby(hue, sort=True, dropna=False)) if len(data) else []
    counts = [replicates(trials[trials["trial_id"].isin(group["trial_id"])]) for _, group in groups]
    for ax, metric in zip(axes, metrics):
        for i, ((level, group), count) in enumerate(zip(groups, counts)):
            _curve_with_band(ax, group, metric, f"{_group_name(hue, level)} ({count})", group_style(i, len(groups)))
        ax.set_xlabel("evaluation interval" if is_language_model(trials) else "epoch")  # an LM's epoch is one
        ax.set_ylabel(label(metric))
        ax.set_title(label(metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if data["epoch"].nunique() == 1:  # otherwise the locator ticks fractions around it
            ax.set_xticks(data["epoch"].unique())
        ax.grid(alpha=0.3)
    if groups:
        place_legend(fig, axes, len(groups))
    if len(data) and data.groupby([*hue, "epoch"], dropna=False)["trial_id"].nunique().gt(1).any():
        over = "trials (seeds and pooled configurations)" if any("configuration" in c for c in counts) else "seeds"
        fig.suptitle(f"line: mean over {over}; band: 95% t interval of the mean", fontsize=9)
    return fig


def replicates(trials: pd.DataFrame) -> str:
    """What a group's mean is over: `3 seeds`, or `21 trials of 21 configurations` when factors vary inside it."""
    n = trials["trial_id"].nunique()
    varying = factor_columns(trials)
    if not varying:
        return plural(n, "seed")
    configs = trials[varying].astype(str).drop_duplicates()
    return f"{plural(n, 'trial')} of {plural(len(configs), 'configuration')}"


def plot_source_usage(usage: list[np.ndarray], title: str = "") -> Figure:
    """Heatmaps of normalised source usage per block (Figure 4 of arXiv 1608.06993 v1), for any DAG.

    Input matrices have rows = layers 1..n and columns = sources 0..n-1; they are drawn
    transposed as in the paper: x = target layer, y = source (0 = block input, at the top).
    Grey cells are pairs without an edge.
    """
    fig = Figure(figsize=(3.4 * len(usage) + 1.0, 3.8), layout="constrained")
    axes = fig.subplots(1, len(usage), squeeze=False)[0]
    cmap = _usage_cmap()
    image = None
    for b, (ax, matrix) in enumerate(zip(axes, usage)):
        grid = np.ma.masked_invalid(np.asarray(matrix, dtype=float).T)  # (source, target)
        n_sources, n_layers = grid.shape
        image = ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, origin="upper",
                          extent=(0.5, n_layers + 0.5, n_sources - 0.5, -0.5))
        ax.set_xlabel("target layer ℓ")
        ax.set_ylabel("source s (0 = block input)")
        ax.set_title(f"block {b + 1}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8, min_n_ticks=1))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=8, min_n_ticks=1))
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes), shrink=0.85)
        bar.set_label("weight norm / layer's largest")
    if title:
        fig.suptitle(wrap_title(title, fig.get_figwidth()))
    return fig


def plot_pareto(df: pd.DataFrame, x: str = "params", y: str = "test_error",
                maximize_x: bool = False, maximize_y: bool = False, hue: str | None = "pattern",
                title: str = "") -> Figure:
    """Configurations (seed means, 95% t interval) and their non-dominated front on two objectives.

    Faint dots are single trials; the front is taken over configuration means, so a lucky
    seed does not move it.
    """
    data = df.dropna(subset=[x, y])
    configs = configurations(data, x=x, y=y)
    front = pareto(configs, x=x, y=y, maximize_x=maximize_x, maximize_y=maximize_y)
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    if hue and hue in data:
        groups = list(data.groupby(hue, sort=True))
        for i, (level, group) in enumerate(groups):
            style = group_style(i, len(groups))
            ax.scatter(group[x], group[y], s=12, alpha=0.45, color=style["color"], marker=style["marker"],
                       linewidths=0)
            _interval_marks(ax, configurations(group, x=x, y=y), x, y, style,  # hue need not be a factor
                            joined=False, label=level_text(level))
    else:
        ax.scatter(data[x], data[y], s=12, alpha=0.45, color="C7", linewidths=0)
        _interval_marks(ax, configs, x, y, {"color": "C7", "linestyle": "-", "marker": "o"}, joined=False,
                        label="configurations")
    if len(front):
        ax.step(front[x].astype(float), front[y].astype(float), where="post", color="k", lw=1.2, zorder=3)
        ax.scatter(front[x], front[y], s=70, facecolors="none", edgecolors="k", zorder=4,
                   label=f"Pareto front ({plural(len(front), 'configuration')})")
    _size_axis(ax, data[x], x, data)
    ax.set_ylabel(label(y) + (" (maximised)" if maximize_y else ""))
    ax.set_title(title or f"Pareto front: {short_label(y)} vs {short_label(x)}")
    ax.grid(alpha=0.3)
    if len(data):
        place_legend(fig, [ax], len(data.groupby(hue)) + 1 if hue and hue in data else 2)
    return fig


def _curve_with_band(ax, group: pd.DataFrame, metric: str, name: str, style: dict[str, str]) -> None:
    """Mean over trials per epoch, with a 95% t interval band where several trials reached it."""
    per_epoch = summarize(group, by="epoch", metric=metric).set_index("epoch").sort_index()
    # markers keep a curve of one or a few epochs visible (a one-point line draws nothing)
    ax.plot(per_epoch.index, per_epoch["mean"], lw=1.5, ms=3 if len(per_epoch) <= 30 else 0, label=name, **style)
    band = per_epoch.dropna(subset=["ci_low", "ci_high"])
    ax.fill_between(band.index, band["ci_low"], band["ci_high"], color=style["color"], alpha=0.2, linewidth=0)


def plural(n: int, word: str) -> str:
    """`1 seed`, `3 seeds`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _size_axis(ax, values: pd.Series, column: str, trials: pd.DataFrame) -> None:
    """Engineering-notation x axis (20k, 1.2M), logarithmic when sizes span > 20x; a language model's
    multiply-adds are per token."""
    text = label(column)
    ax.set_xlabel(text.replace("per image", "per token") if column == MACS and is_language_model(trials) else text)
    ax.margins(x=0.08)  # keep end markers and their interval caps off the frame
    positive = values[values > 0]
    if len(positive) and positive.max() / positive.min() > 20:
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def _usage_cmap():
    from matplotlib import colormaps

    # no edge: light grey, distinct from a weak edge (dark purple)
    return colormaps["viridis"].with_extremes(bad="0.85")


def _group_name(hue: list[str], level) -> str:
    """Legend text of a group: `dense`, or `dense, growth=12` for several grouping columns."""
    values = level if isinstance(level, tuple) else (level,)
    head, *rest = [level_text(v) for v in values]
    return ", ".join([head, *(f"{k}={v}" for k, v in zip(hue[1:], rest))])


def plot_feature_usage(frame: pd.DataFrame, title: str = "") -> Figure:
    """Figure 4 of arXiv 1608.06993 v1 for a whole network, from `feature_usage(model)`.

    Columns are the convolutional layers in network order (blocks, transitions) and the
    classifier; rows are the feature maps they read (or the sources, with per-source
    usage), oldest at the top. Colour: weight norm / the column's largest; grey: not read.
    Dashed lines separate blocks; red boxes mark the transitions and the classifier.
    """
    targets = list(dict.fromkeys(frame["target"]))
    per_map = frame["channel"].notna().any()
    keys = list(zip(frame["source"], frame["channel"] if per_map else [0] * len(frame)))
    order = {s: i for i, s in enumerate(dict.fromkeys(frame["source"]))}
    rows = sorted(dict.fromkeys(keys), key=lambda k: (order[k[0]], k[1]))
    index = {k: i for i, k in enumerate(rows)}
    grid = np.full((len(rows), len(targets)), np.nan)
    col = {t: j for j, t in enumerate(targets)}
    for key, target, value in zip(keys, frame["target"], frame["value"]):
        grid[index[key], col[target]] = value
    fig = Figure(figsize=(min(4.0 + 0.06 * len(targets), 14.0), min(3.0 + 0.025 * len(rows), 10.0)),
                 layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=_usage_cmap(), vmin=0.0, vmax=1.0,
                      aspect="auto", interpolation="nearest")
    kinds = dict(zip(frame["target"], frame["target_kind"]))
    _mark_targets(ax, targets, kinds, len(rows))
    _mark_sources(ax, [s for s, _ in rows], len(targets))
    ax.set_xlabel("target: convolutional layer (network order), transitions T, classifier C")
    ax.set_ylabel("source feature map" if per_map else "source layer")
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("weight norm / column's largest")
    title = title or f"Feature usage (weight norm per input {'feature map' if per_map else 'source layer'})"
    ax.set_title(wrap_title(title, fig.get_figwidth()), fontsize=10)
    return fig


def wrap_title(title: str, width_inches: float) -> str:
    """The title broken into lines that fit a figure this wide (a long trial label would be cut off)."""
    return textwrap.fill(title, width=max(int(width_inches * 9), 20), break_long_words=False)


def _mark_targets(ax, targets: list[str], kinds: dict[str, str], n_rows: int) -> None:
    """Block-boundary lines, red boxes around transitions and the classifier, x tick labels."""
    from matplotlib.patches import Rectangle

    ticks, labels, start = [], [], 0
    for j, target in enumerate(targets):
        if kinds[target] == "layer":
            continue
        if j > start:  # the block of layers before this transition / the classifier
            ticks.append((start + j - 1) / 2)
            labels.append(targets[start].split(".")[0].replace("block", "block "))
        ax.add_patch(Rectangle((j - 0.5, -0.5), 1.0, n_rows, fill=False, edgecolor="red", lw=1.4))
        ax.axvline(j - 0.5, color="white", ls="--", lw=0.6)
        ax.axvline(j + 0.5, color="white", ls="--", lw=0.6)
        ticks.append(j)
        labels.append("C" if kinds[target] == "classifier" else "T" + target.removeprefix("transition"))
        start = j + 1
    ax.set_xticks(ticks, labels, fontsize=8)


def _mark_sources(ax, sources: list[str], n_cols: int) -> None:
    """A line and a label where each block's sources begin (its producer: stem or transition)."""
    ticks, labels, block = [], [], 0
    for i, source in enumerate(sources):
        if source.startswith("block") or (i and sources[i - 1] == source):
            continue
        block += 1
        if i:
            ax.axhline(i - 0.5, color="white", ls="--", lw=0.6)
        ticks.append(i)
        labels.append(f"{source}, block {block}")
    ax.set_yticks(ticks, labels, fontsize=7)
