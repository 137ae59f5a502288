"""Is it the wiring or the parameters? Rank correlation of topology metrics with a result metric,
controlling for parameter count, with bootstrap intervals, a figure and a report section.

The partial rank correlation of metric x with outcome y given size z is the Pearson correlation
of the residuals of rank(x) and rank(y) after a least-squares fit on rank(z) (Spearman partial
correlation). Intervals resample trials with replacement (percentile bootstrap); seeds of one
architecture are resampled as separate trials, so the interval is optimistic when replicates
dominate (the report says how many distinct architectures there are).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from connectome.analysis.units import is_points, words
from connectome.store.layout import StudyDir
from connectome.topology import PREFIX, topology_columns

# Fewest trials for a partial correlation with one control to mean anything.
MIN_TRIALS = 5
# Fewest distinct architectures (by canonical hash): seeds of one graph share every topology metric,
# so with fewer the ranks of wiring and of params barely move and "wiring or parameters?" has no answer.
MIN_ARCHITECTURES = 5
BOOTSTRAP_SAMPLES = 1000


def network_metric_columns(trials: pd.DataFrame) -> list[str]:
    """Whole-network `topo.*` columns that vary across the trials (block columns left out)."""
    cols = [c for c in trials.columns if c.startswith(PREFIX) and not c.startswith(PREFIX + "block")]
    return [c for c in cols if trials[c].nunique(dropna=True) > 1]


def partial_rank_correlation(x: np.ndarray, y: np.ndarray, z: np.ndarray | None) -> float:
    """Spearman correlation of x and y, partialling out z (None: plain Spearman); NaN if undefined."""
    return float(_partial_rank_correlations(x[None], y[None], None if z is None else z[None])[0])


def _partial_rank_correlations(x: np.ndarray, y: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    """partial_rank_correlation of each row of x, y (and z): the bootstrap's resamples in one pass."""
    rx, ry = _centred(_rank(x)), _centred(_rank(y))
    if z is not None:
        rz = _centred(_rank(z))
        rx, ry = _residual(rx, rz), _residual(ry, rz)
    sx, sy = rx.std(axis=-1), ry.std(axis=-1)
    defined = (sx >= 1e-12) & (sy >= 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, np.mean(rx * ry, axis=-1) / (sx * sy), math.nan)


def _centred(v: np.ndarray) -> np.ndarray:
    return v - v.mean(axis=-1, keepdims=True)


def _residual(r: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Residual of centred r after a least-squares fit on centred z (with an intercept); z constant: r."""
    var = np.sum(z * z, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(var < 1e-12, 0.0, np.sum(r * z, axis=-1, keepdims=True) / var)
    return r - z * slope


def _rank(v: np.ndarray) -> np.ndarray:
    """Ranks from 1 along the last axis, ties getting their average rank (pandas' method="average").

    Vectorised: the bootstrap ranks a thousand resamples per metric, a pandas Series each cost
    seconds per report.
    """
    v = np.asarray(v, dtype=float)
    order = np.argsort(v, axis=-1, kind="mergesort")
    ordered = np.take_along_axis(v, order, axis=-1)
    n, position = v.shape[-1], np.arange(v.shape[-1])
    new = np.ones(v.shape, dtype=bool)
    new[..., 1:] = ordered[..., 1:] != ordered[..., :-1]  # a run of equal values starts here
    ends = np.ones(v.shape, dtype=bool)
    ends[..., :-1] = new[..., 1:]
    first = np.maximum.accumulate(np.where(new, position, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, position, n), -1), axis=-1), -1)
    ranks = np.empty(v.shape)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=-1)
    return ranks


def bootstrap_interval(x, y, z, n_boot: int = BOOTSTRAP_SAMPLES, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the partial rank correlation over resampled trials."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), (n_boot, len(x)))  # the same draws as n_boot calls of size n
    values = _partial_rank_correlations(x[idx], y[idx], None if z is None else z[idx])
    values = values[~np.isnan(values)]
    if len(values) < n_boot // 2:  # mostly degenerate resamples: no honest interval
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def topology_correlations(trials: pd.DataFrame, metric: str = "test_acc", control: str | None = "params",
                          n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per varying network topology metric: n, Spearman rho, partial rho given `control`, 95% interval."""
    rows = []
    for col in network_metric_columns(trials):
        keep = [col, metric] + ([control] if control else [])
        data = trials[keep].apply(pd.to_numeric, errors="coerce").dropna()
        if len(data) < MIN_TRIALS:
            continue
        x, y = data[col].to_numpy(float), data[metric].to_numpy(float)
        z = data[control].to_numpy(float) if control else None
        lo, hi = bootstrap_interval(x, y, z, n_boot=n_boot, seed=seed)
        rows.append({"topology": col[len(PREFIX):], "n": len(data),
                     "rho": partial_rank_correlation(x, y, None),
                     "partial_rho": partial_rank_correlation(x, y, z), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["topology", "n", "rho", "partial_rho", "ci_low", "ci_high"])


def add_topology_columns(trials: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """Trials with `topo.*` columns, computed from each trial's spec.json where the record lacks them."""
    if any(c.startswith(PREFIX) for c in trials.columns) or "trial_id" not in trials:
        return trials
    if not StudyDir(results_dir).trials.is_dir():
        return trials
    from connectome.analysis.lookup import trial_specs

    rows = {m.trial_id: topology_columns(m.spec) for m in trial_specs(results_dir)}
    extra = pd.DataFrame.from_dict(rows, orient="index")
    return trials.join(extra, on="trial_id") if len(extra) else trials


def count_architectures(trials: pd.DataFrame, results_dir: str | Path | None = None) -> int:
    """Distinct canonical hashes among the trials; from spec.json where the record lacks the column."""
    hashes = trials["canonical_hash"] if "canonical_hash" in trials else pd.Series(index=trials.index, dtype=object)
    if hashes.isna().any() and results_dir is not None and StudyDir(results_dir).trials.is_dir():
        from connectome.analysis.lookup import trial_specs

        known = {m.trial_id: m.spec.canonical_hash for m in trial_specs(results_dir)}
        hashes = hashes.fillna(trials["trial_id"].map(known)) if "trial_id" in trials else hashes
    return int(hashes.dropna().nunique())


def plot_topology_correlations(table: pd.DataFrame, metric: str, control: str | None) -> Figure:
    """Forest plot: partial rank correlation per topology metric with its bootstrap interval."""
    fig = Figure(figsize=(6.0, 0.35 * max(len(table), 3) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    ys = np.arange(len(table))[::-1]
    rho = table["partial_rho"] if control else table["rho"]
    err = np.vstack([rho - table["ci_low"], table["ci_high"] - rho]).clip(min=0)
    ax.errorbar(rho, ys, xerr=np.nan_to_num(err), fmt="o", color="C0", capsize=3, label="partial (95% bootstrap)")
    if control:
        ax.scatter(table["rho"], ys, marker="x", color="C3", label="raw Spearman", zorder=3)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(ys, table["topology"])
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"rank correlation with {metric}" + (f" given {control}" if control else ""))
    ax.set_title(f"topology vs {metric}: is it the wiring or the parameters?")
    ax.grid(alpha=0.3, axis="x")
    # below the axes: inside, it covered the last row's marker whichever corner it took
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return fig


def topology_section(doc, results, metric: str, out: Path) -> None:
    """Report section: the correlation table and its figure (nothing when too few trials vary)."""
    from connectome.analysis.figures import save_figure

    completed = add_topology_columns(results.completed(), results.path)
    doc.heading(f"Topology and {words(metric) if is_points(metric) else metric}")
    scored = completed.dropna(subset=[metric]) if metric in completed else completed.iloc[:0]
    archs = count_architectures(scored, results.path)
    if archs < MIN_ARCHITECTURES:
        doc.text(f"{archs} distinct architecture(s) (by canonical hash) among the completed trials with `{metric}`, "
                 f"fewer than {MIN_ARCHITECTURES}: a rank correlation over so few graphs cannot separate wiring "
                 "from parameter count, so no topology correlation is shown.")
        return
    table = topology_correlations(completed, metric=metric)
    if table.empty:
        doc.text(f"Fewer than {MIN_TRIALS} completed trials with varying topology metrics and `{metric}`: "
                 "no topology correlation.")
        return
    doc.text(f"Spearman rank correlation of each whole-network topology metric with `{metric}` "
             f"(`rho`) and partial rank correlation controlling for `params` (`partial_rho`) with a "
             f"95% percentile bootstrap interval over {len(completed)} completed trials "
             f"({archs} distinct architectures; seeds resampled as trials, so intervals are optimistic).")
    doc.table(table.round(3))
    paths = save_figure(plot_topology_correlations(table, metric, "params"), StudyDir(out).figure("topology_correlation"))
    doc.figure(*paths, caption=f"Partial rank correlation of topology metrics with {metric} given params.")
