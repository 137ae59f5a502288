"""Random wiring against the reference patterns: the metric's distribution per graph generator.

A study of the `random` pattern (Erdos-Renyi, Watts-Strogatz, Barabasi-Albert blocks, several graph
seeds per setting, usually at one parameter budget) asks how a generator's graphs compare with
dense, partial and residual blocks. Each generator setting (model and its options, the graph seed
left out) is a population of graphs: the section gives its mean with a t interval over the setting's
trials, its spread and range, and a strip plot of every trial beside the references.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from connectome.analysis.figures import label, plural, save_figure
from connectome.analysis.stats import summarize
from connectome.analysis.units import is_points
from connectome.store.layout import StudyDir

RANDOM = "random"
OPTION = "pattern_options."
MODEL = OPTION + "model"
GRAPH_SEED = OPTION + "seed"  # which graph of a setting: a replicate of the generator, not a setting


def generator_columns(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials with `generator` (er, ws, ba; the pattern for other patterns) and `setting` (with options)."""
    options = [c for c in trials.columns if c.startswith(OPTION) and c not in (MODEL, GRAPH_SEED)]
    is_random = trials["pattern"].astype(str) == RANDOM
    generator = trials[MODEL].where(is_random, trials["pattern"]) if MODEL in trials else trials["pattern"]
    setting = [_setting(row, options) if random else str(row["pattern"])
               for random, (_, row) in zip(is_random, trials.iterrows())]
    return trials.assign(generator=generator.astype(str), setting=setting)


def _setting(row: pd.Series, options: list[str]) -> str:
    """`er p=0.2`, `ws k=4 p=0.25`: the model and its options that are set, integers without `.0`."""
    parts = [f"{c[len(OPTION):]}={_number(row[c])}" for c in options if pd.notna(row[c])]
    return " ".join([str(row[MODEL]), *parts])


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def wiring_table(trials: pd.DataFrame, metric: str, by: str = "setting") -> pd.DataFrame:
    """Per `generator` or `setting`: graphs, trials, mean with its 95% t interval, s.d., min, max, params range."""
    data = generator_columns(trials).dropna(subset=[metric])
    table = summarize(data, by=by, metric=metric).set_index(by)
    grouped = data.groupby(by)
    table.insert(0, "graphs", grouped.apply(_graphs, include_groups=False))
    table["min"], table["max"] = grouped[metric].min(), grouped[metric].max()
    if "params" in data:
        table["params_min"], table["params_max"] = grouped["params"].min(), grouped["params"].max()
    order = _order(data, by)
    return table.loc[order].rename(columns={"count": "trials"}).reset_index()


def _graphs(trials: pd.DataFrame) -> int:
    """Distinct architectures: by canonical hash when every trial has one, else by pattern and its options."""
    if "canonical_hash" in trials and trials["canonical_hash"].notna().all():
        return int(trials["canonical_hash"].nunique())
    keys = [c for c in trials.columns if c == "pattern" or c.startswith(OPTION)]
    return len(trials[keys].astype(str).drop_duplicates())


def _order(data: pd.DataFrame, by: str) -> list[str]:
    """References (non-random patterns) in the order they appear, then the generators' groups sorted by name."""
    random = data["pattern"].astype(str) == RANDOM
    return [*dict.fromkeys(data.loc[~random, by]), *sorted(set(data.loc[random, by]))]


def plot_wiring(trials: pd.DataFrame, metric: str) -> Figure:
    """Every trial's metric per generator setting (dots) with the setting's mean (bar); references as lines."""
    data = generator_columns(trials).dropna(subset=[metric])
    random = data[data["pattern"].astype(str) == RANDOM]
    settings = sorted(set(random["setting"]))
    fig = Figure(figsize=(max(6.0, 0.75 * len(settings) + 2.5), 4.4), layout="constrained")
    ax = fig.add_subplot()
    families = sorted(set(random["generator"]))
    for x, setting in enumerate(settings):
        values = random.loc[random["setting"] == setting, metric].to_numpy(dtype=float)
        color = f"C{families.index(random.loc[random['setting'] == setting, 'generator'].iloc[0])}"
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(x + jitter, values, s=22, color=color, zorder=3)
        ax.hlines(values.mean(), x - 0.3, x + 0.3, color=color, lw=2, zorder=2)
    references = data[data["pattern"].astype(str) != RANDOM].groupby("setting", sort=False)[metric]
    for i, (name, values) in enumerate(references):
        ax.axhline(values.mean(), color=f"C{len(families) + i}", ls="--", lw=1.2,
                   label=f"{name} ({plural(len(values), 'trial')}{', mean' if len(values) > 1 else ''})")
    ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(settings) - 0.4)
    ax.set_ylabel(label(metric))
    ax.set_title(f"{label(metric)} per random-graph generator")
    ax.grid(alpha=0.3, axis="y")
    if len(references):
        ax.legend(fontsize=8, title="references")
    return fig


def wiring_section(doc, completed: pd.DataFrame, metric: str, out: Path) -> None:
    """Report section: per-generator tables and the strip plot (nothing without random-pattern trials)."""
    if "pattern" not in completed or metric not in completed:
        return
    random = completed[completed["pattern"].astype(str) == RANDOM].dropna(subset=[metric])
    if random.empty or MODEL not in random:
        return
    doc.heading("Random wiring per generator")
    doc.text(f"`{metric}` per random-graph generator and per setting (model and options; the graph seed picks "
             "one graph of a setting, so a setting's graphs are its replicates) beside the other patterns: "
             "`graphs` distinct architectures (canonical hash), `trials`, mean with a 95% Student-t interval "
             "over the trials, s.d., min and max. With one training seed per graph, a setting's spread mixes "
             "graph-to-graph and seed-to-seed variation; a reference with one trial has no interval.")
    shown = ("mean", "std", "ci_low", "ci_high", "min", "max") if is_points(metric) else ()
    doc.table(wiring_table(completed, metric, by="generator"), points=shown)
    doc.table(wiring_table(completed, metric, by="setting"), points=shown)
    paths = save_figure(plot_wiring(completed, metric), StudyDir(out).figure("random_wiring"))
    doc.figure(*paths, caption=f"{label(metric).capitalize()} per random-graph setting: dots are single trials "
                               "(one per graph and training seed), bars their mean; dashed lines: the other "
                               "patterns (their mean when several trials).")
