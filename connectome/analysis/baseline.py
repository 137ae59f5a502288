"""Each wiring of a decoder study against its baseline (issue 28): paired validation and test differences,
what the wiring costs (parameters, throughput, stored activations), how stable the ranking is across seeds,
and the gain against a crossed numeric factor such as depth."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from connectome.analysis.answer import DECODER_REFERENCES, wiring_levels, without_budget_growth
from connectome.analysis.results import Results
from connectome.analysis.studyfile import budget_params
from connectome.analysis.stats import Comparison, compare, crossed_factors
from connectome.analysis.units import headline_metric, is_language_model, level_text, selection_metric
from connectome.store.layout import StudyDir

# The columns of the cost table: the cost model's stored activations stand in for training memory, which a
# CPU trial sharing its worker process cannot measure alone (docs/benchmarks.md measures it in fresh processes).
COSTS = ("params", "tokens_per_s", "activations")


def baseline_section(doc, results: Results, out: Path) -> None:
    """Report section: every wiring minus the baseline, on validation and test, with its costs and the ranking."""
    budget = budget_params(results.path)  # a budget's width is each wiring's outcome: not paired on
    trials = _with_throughput(without_budget_growth(results.completed(), budget), results.epochs)
    if not is_language_model(trials) or "pattern" not in trials or "seed" not in trials:
        return
    trials = trials.assign(wiring=wiring_levels(trials))
    base = next((ref for ref in DECODER_REFERENCES if ref in set(trials["wiring"])), None)
    if base is None or trials["wiring"].nunique() < 2:
        return
    metrics = (selection_metric(trials), headline_metric(trials))
    table = differences(trials, base, metrics)
    doc.heading(f"Against {base}")
    doc.text(f"Each wiring minus {base}, paired on the seed and every factor crossed with the wiring: mean "
             "difference [95% t interval] in validation (the selection metric) and test bits per byte, below 0 "
             f"is better. Costs are ratios to {base} over the same pairs: parameters, training tokens per second "
             "(measured in the trial, beside whatever else the machine ran: docs/benchmarks.md has quiet, "
             "interleaved numbers) and the cost model's stored activations per token, a proxy for training memory.")
    doc.table(table[[c for c in table if not c.startswith("_")]])
    paths = _save(plot_differences(table, base, metrics), out, "against_baseline")
    bars = "bar: 95% t interval" if replicated(table) else "one pair each (one seed): no interval"
    doc.figure(*paths, caption=f"Each wiring minus {base} in validation and test bits per byte, paired over seeds: "
                               f"mark: mean difference; {bars}; left of the grey line is better.")
    _ranking(doc, trials, metrics[1], out)
    _gain_vs_factor(doc, trials, base, metrics[1], out)


def differences(trials: pd.DataFrame, base: str, metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per wiring: paired differences from `base` per metric, and its cost ratios over the same pairs."""
    rows = []
    for wiring in sorted(set(trials["wiring"]) - {base}):
        row: dict[str, object] = {"wiring": wiring}
        for metric in metrics:
            c = compare(trials, factor="wiring", a=wiring, b=base, metric=metric)
            row.update({"pairs": c.n_pairs, f"{metric} diff": _interval(c)})
            row[f"_{metric}"] = c
        row.update(_cost_ratios(trials, wiring, base))
        rows.append(row)
    return pd.DataFrame(rows)


def replicated(table: pd.DataFrame) -> bool:
    """Whether any wiring of a `differences` table has more than one pair, so an interval."""
    return bool((table["pairs"] > 1).any())


def _interval(c: Comparison) -> str:
    return f"{c.mean_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]" if c.n_pairs > 1 else f"{c.mean_diff:+.3f}"


def _cost_ratios(trials: pd.DataFrame, wiring: str, base: str) -> dict[str, str]:
    """Each cost of `wiring` over the baseline's on the same pairs as its comparisons (`compare`'s pairing):
    geometric mean (min-max) of the ratios."""
    out = {}
    for cost in COSTS:
        if cost not in trials or trials[cost].isna().all():
            continue
        pairs = compare(trials, factor="wiring", a=wiring, b=base, metric=cost).pairs
        if pairs.empty:
            continue
        ratios = (pairs["a"] / pairs["b"]).to_numpy(dtype=float)
        mean = float(np.exp(np.log(ratios).mean()))
        spread = f" ({ratios.min():.2f}-{ratios.max():.2f})" if np.ptp(ratios) >= 0.005 else ""
        out[f"{cost} vs {base}"] = f"{mean:.2f}x{spread}"
    return out


def _with_throughput(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """The trials with `tokens_per_s`, each trial's mean over its evaluation intervals."""
    if "tokens_per_s" not in epochs or "trial_id" not in epochs or "trial_id" not in trials:
        return trials
    rate = epochs.groupby("trial_id")["tokens_per_s"].mean()
    return trials.assign(tokens_per_s=trials["trial_id"].map(rate))


def plot_differences(table: pd.DataFrame, base: str, metrics: tuple[str, ...]) -> Figure:
    """Forest plot: one panel per metric, a row per wiring, its mean paired difference and interval."""
    fig = Figure(figsize=(4.0 * len(metrics) + 1.5, 0.32 * max(len(table), 3) + 1.3), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    ys = np.arange(len(table))[::-1]
    for ax, metric in zip(axes, metrics):
        comps = table[f"_{metric}"]
        mean = np.array([c.mean_diff for c in comps])
        err = np.vstack([mean - [c.ci_low for c in comps], [c.ci_high for c in comps] - mean])
        ax.errorbar(mean, ys, xerr=np.nan_to_num(err).clip(min=0), fmt="o", color="C0", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel(f"{metric} minus {base}")
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(ys, table["wiring"])
    fig.suptitle(f"each wiring minus {base}, paired over seeds" + (" (95% t interval)" if replicated(table) else
                                                                    " (one seed: no interval)"))
    return fig


def _ranking(doc, trials: pd.DataFrame, metric: str, out: Path) -> None:
    """How often each pair of wirings changes order from one seed to another, per crossed configuration."""
    wide = per_seed(trials, metric)
    if len(wide) < 2:
        return
    flips = order_flips(wide)
    stable = int((flips["minority"] == 0).sum())
    doc.heading("Ranking across seeds", level=3)
    doc.text(f"Each seed ranks the wirings by `{metric}` (1 = lowest); a pair's order flips when some seeds put it "
             f"one way and others the other. Of {len(flips)} pairs, {stable} keep one order in every seed and "
             f"{len(flips) - stable} flip (the table after the ranks lists them, `minority`: the seeds of the rarer "
             "order).")
    doc.table(rank_table(wide))
    shown = flips[flips["minority"] > 0].sort_values("minority", ascending=False, kind="stable")
    if len(shown):
        doc.table(shown.head(30))
    paths = _save(plot_win_fractions(wide), out, "ranking_stability")
    doc.figure(*paths, caption=f"Fraction of seeds in which the row's wiring has a lower `{metric}` than the "
                               "column's (0.5: a coin flip; 0 or 1: the same order in every seed).")


def per_seed(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The metric with a row per seed (and crossed configuration) and a column per wiring."""
    within = ["seed", *crossed_factors(trials, "wiring")]
    return trials.pivot_table(index=within, columns="wiring", values=metric, aggfunc="mean")


def rank_table(wide: pd.DataFrame) -> pd.DataFrame:
    """Wirings by mean rank (1 = lowest metric), with their rank in each seed (and configuration) as columns."""
    ranks = wide.rank(axis=1, method="average").T
    names = wide.index.names
    ranks.columns = [", ".join(f"{k}={level_text(v)}" for k, v in zip(names, key if isinstance(key, tuple) else (key,)))
                     for key in ranks.columns]
    return ranks.assign(mean_rank=ranks.mean(axis=1)).sort_values("mean_rank", kind="stable").reset_index()


def order_flips(wide: pd.DataFrame) -> pd.DataFrame:
    """Per pair of wirings: in how many seeds (and configurations) each is lower, and the minority count."""
    rows = []
    for a, b in itertools.combinations(sorted(wide.columns), 2):
        both = wide[[a, b]].dropna()
        lower, higher = int((both[a] < both[b]).sum()), int((both[a] > both[b]).sum())
        rows.append({"a": a, "b": b, "a lower": lower, "b lower": higher, "minority": min(lower, higher)})
    return pd.DataFrame(rows)


def win_fractions(wide: pd.DataFrame) -> pd.DataFrame:
    """The fraction of seeds (and configurations) in which the row's wiring is lower than the column's."""
    order = list(wide.mean().sort_values(kind="stable").index)
    wins = [[np.nan if a == b else float((wide[a] < wide[b])[wide[[a, b]].notna().all(axis=1)].mean())
             for b in order] for a in order]
    return pd.DataFrame(wins, index=order, columns=order)


def plot_win_fractions(wide: pd.DataFrame) -> Figure:
    """Heat map of `win_fractions`, wirings in order of their mean metric."""
    wins = win_fractions(wide)
    n = len(wins)
    fig = Figure(figsize=(0.45 * n + 3.0, 0.45 * n + 2.0), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(wins.to_numpy(), cmap="RdBu_r", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(wins.to_numpy()):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(n), wins.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), wins.index, fontsize=8)
    fig.colorbar(image, ax=ax, label="fraction of seeds: row lower than column")
    ax.set_title("ranking stability across seeds")
    return fig


def _gain_vs_factor(doc, trials: pd.DataFrame, base: str, metric: str, out: Path) -> None:
    """The difference from the baseline at each value of a crossed numeric factor (e.g. sublayers)."""
    numeric = [c for c in crossed_factors(trials, "wiring")
               if pd.to_numeric(trials[c], errors="coerce").notna().all() and trials[c].nunique() > 1]
    for factor in numeric:
        gains = gain_by_level(trials, base, metric, factor)
        doc.heading(f"Gain against {factor}", level=3)
        doc.text(f"Each wiring minus {base} in `{metric}` at each {factor}, paired over seeds there; "
                 "95% t interval.")
        doc.table(gains.assign(diff=[_interval(c) for c in gains["_c"]]).drop(columns="_c"))
        paths = _save(plot_gain(gains, base, metric, factor), out, f"gain_vs_{factor}")
        doc.figure(*paths, caption=f"{metric} of each wiring minus {base} against {factor}: mark: mean paired "
                                   "difference over seeds; bar: 95% t interval; below the grey line is better.")


def gain_by_level(trials: pd.DataFrame, base: str, metric: str, factor: str) -> pd.DataFrame:
    """One row per (wiring, level of factor): the paired comparison with the baseline at that level."""
    rows = []
    for level, at in trials.groupby(factor):
        for wiring in sorted(set(at["wiring"]) - {base}):
            if base in set(at["wiring"]):
                c = compare(at, factor="wiring", a=wiring, b=base, metric=metric)
                rows.append({"wiring": wiring, factor: level, "pairs": c.n_pairs, "_c": c})
    return pd.DataFrame(rows)


def plot_gain(gains: pd.DataFrame, base: str, metric: str, factor: str) -> Figure:
    """Lines of the mean paired difference against the factor, one per wiring, with interval bars."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    wirings = list(dict.fromkeys(gains["wiring"]))
    offsets = np.linspace(-0.04, 0.04, len(wirings)) if len(wirings) > 1 else [0.0]
    for k, (wiring, rows) in enumerate(gains.groupby("wiring", sort=False)):
        x = rows[factor].to_numpy(dtype=float) * (1 + offsets[k])  # spread apart on a log axis
        mean = np.array([c.mean_diff for c in rows["_c"]])
        err = np.vstack([mean - [c.ci_low for c in rows["_c"]], [c.ci_high for c in rows["_c"]] - mean])
        ax.errorbar(x, mean, yerr=np.nan_to_num(err).clip(min=0), marker="o", capsize=3, label=wiring,
                    color=f"C{k % 10}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    levels = sorted(gains[factor].astype(float).unique())
    ax.set_xticks(levels, [f"{v:g}" for v in levels])
    ax.set_xlabel(factor)
    ax.set_ylabel(f"{metric} minus {base}")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(len(wirings), 3), fontsize=8)
    return fig


def _save(fig: Figure, out: Path, name: str) -> list[Path]:
    from connectome.analysis.figures import save_figure

    return save_figure(fig, StudyDir(out).figure(name))
