"""Accuracy against the longest skip a block keeps: the `span` pattern's curve (report section and figure).

A study that retrains the `span` pattern over `pattern_options.max_span` (1, 2, 4, ...) turns the
paper's one partial-vs-dense comparison (arXiv 1608.06993 v1, Sec. 5) into a curve. Trials without
a limit (max_span null, or the `dense` pattern) are the dense reference, drawn as a band.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from connectome.analysis.figures import label, plural, save_figure
from connectome.analysis.stats import crossed_factors, summarize
from connectome.analysis.units import is_points
from connectome.store.layout import StudyDir
from connectome.store.record import factor_columns

SPAN = "pattern_options.max_span"
# Patterns whose trials sit on the curve; a dense trial is the curve's unlimited end.
CURVE_PATTERNS = ("span", "dense")
MAX_GROUPS = 6


def span_trials(completed: pd.DataFrame) -> pd.DataFrame:
    """Completed trials of the span curve (span or dense pattern), or an empty frame without two finite spans."""
    if SPAN not in completed or "pattern" not in completed:
        return completed.iloc[:0]
    trials = completed[completed["pattern"].isin(CURVE_PATTERNS)]
    finite = pd.to_numeric(trials[SPAN], errors="coerce").dropna()
    return trials if finite.nunique() >= 2 else completed.iloc[:0]


def span_groups(trials: pd.DataFrame) -> list[str]:
    """Factors crossed with the span: they vary within a span level (the pattern, which only says whether
    there is a limit, and a growth a parameter budget sets per span are consequences of the span, not groups)."""
    crossed = set(crossed_factors(trials, SPAN))
    return [c for c in factor_columns(trials) if c in crossed and c != "pattern"]


def span_table(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per group and max_span (NaN = no limit): seeds, mean metric with its 95% t interval, mean params."""
    data = trials.assign(**{SPAN: pd.to_numeric(trials[SPAN], errors="coerce")})
    groups = span_groups(data)
    # a growth set per span (by a parameter budget) is shown beside the span, as its mean
    derived = ("growth",) if "growth" in factor_columns(data) and "growth" not in groups else ()
    means = tuple(c for c in (*derived, "params") if c in data and c != metric)
    table = summarize(data, by=[*groups, SPAN], metric=metric, means=means)
    return table.rename(columns={"mean": metric})


def plot_span_curve(table: pd.DataFrame, metric: str, groups: list[str]) -> Figure:
    """Metric against max_span (log2 axis) per group; the unlimited (dense) configuration as a band."""
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    parts = table.groupby(groups, sort=True) if groups else [((), table)]
    for i, (level, part) in enumerate(parts):
        name = ", ".join(f"{k}={v}" for k, v in zip(groups, np.atleast_1d(level))) or "span"
        _curve(ax, part, metric, f"C{i}", name)
    ax.set_xscale("log", base=2)
    spans = sorted(table[SPAN].dropna().unique())
    ax.set_xticks(spans, [f"{s:g}" for s in spans])
    ax.set_xlabel("max_span: longest skip kept inside a block (layers)")
    ax.set_ylabel(label(metric))
    ax.set_title(f"{label(metric)} vs the longest skip kept")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _curve(ax, part: pd.DataFrame, metric: str, color: str, name: str) -> None:
    """One group's finite spans joined by a line with t-interval bars, its unlimited level as a band."""
    finite = part.dropna(subset=[SPAN]).sort_values(SPAN)
    err = np.vstack([finite[metric] - finite["ci_low"], finite["ci_high"] - finite[metric]])
    ax.errorbar(finite[SPAN], finite[metric], yerr=np.nan_to_num(err).clip(min=0), color=color, marker="o",
                ms=5, capsize=3, label=f"{name} ({plural(int(finite['count'].sum()), 'trial')})")
    for row in part[part[SPAN].isna()].itertuples():
        mean, low, high = getattr(row, metric), row.ci_low, row.ci_high
        ax.axhline(mean, color=color, ls="--", lw=1, label=f"{name}: no limit (dense, {plural(row.count, 'trial')})")
        if not (np.isnan(low) or np.isnan(high)):
            ax.axhspan(low, high, color=color, alpha=0.12, lw=0)


def span_section(doc, completed: pd.DataFrame, metric: str, out: Path) -> None:
    """Report section: the table and curve of the metric against max_span (nothing without a span curve)."""
    trials = span_trials(completed)
    if trials.empty or metric not in trials:
        return
    groups = span_groups(trials)
    table = span_table(trials, metric)
    doc.heading(f"{label(metric).capitalize()} against the longest skip kept")
    doc.text(f"`{metric}` per `max_span` (the `span` pattern: inside each block a layer reads only the nodes at "
             "most that many layers back; the block output reads every node), mean over seeds with a 95% "
             "Student-t interval of the mean; `max_span` empty = no limit (the dense block). A span at least "
             "the block's layer count is the dense graph (it runs once; see `duplicate_of`).")
    doc.table(table, points=("std", "ci_low", "ci_high") if is_points(metric) else ())
    if groups and table.groupby(groups).ngroups > MAX_GROUPS:
        doc.text(f"More than {MAX_GROUPS} combinations of other factors: no curve figure.")
        return
    paths = save_figure(plot_span_curve(table, metric, groups), StudyDir(out).figure("span_curve"))
    doc.figure(*paths, caption=f"{label(metric)} against max_span (log2 axis): marks are means over seeds, bars 95% "
                               "t intervals (none for a single seed); dashed line and band: no limit (dense).")
