"""Statistics on a trials frame: grouped summaries with t intervals, Pareto sets, paired tests."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.special import stdtrit  # the t quantile without importing scipy.stats (0.7 s)

from connectome.analysis.results import FRACTION_METRICS, MACS, factor_columns, is_factor
from connectome.analysis.units import is_points
from connectome.errors import ConfigError


# Where a metric can lie: intervals are cut at these bounds (an error rate is never below 0).
NONNEGATIVE = frozenset({"params", MACS, "activations", "test_loss", "train_loss",
                         "val_loss", "final_train_loss", "wall_time_s", "train_time_s"})


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take: [0, 1] for fractions, [0, 100] for points, [0, inf) for sizes and losses."""
    if metric in FRACTION_METRICS:
        return 0.0, 1.0
    if is_points(metric):
        return 0.0, 100.0
    return (0.0, np.inf) if metric in NONNEGATIVE else (-np.inf, np.inf)


def summarize(df: pd.DataFrame, by: list[str] | str, metric: str = "test_error",
              confidence: float = 0.95, means: tuple[str, ...] = ()) -> pd.DataFrame:
    """Count, mean, std and Student-t confidence interval of `metric` per group of `by`.

    Rows where the metric is missing (failed trials) are left out; a group of one has no
    interval (NaN). The interval is cut at the metric's range (`metric_range`: a fraction's
    interval stays inside [0, 1]). `means` adds the group mean of other columns (sizes).
    """
    by = [by] if isinstance(by, str) else list(by)
    means = [c for c in means if c != metric]
    _require(df, [*by, metric, *means])
    data = df.dropna(subset=[metric])
    if not by:
        data = data.assign(_all="all")
        by = ["_all"]
    grouped = data.groupby(by, dropna=False, sort=True)
    out = grouped[metric].agg(count="count", mean="mean", std="std")
    out = out.join(grouped[means].mean()).reset_index() if means else out.reset_index()
    half = _t_half_width(out["std"], out["count"], confidence)
    low, high = metric_range(metric)
    out["ci_low"] = (out["mean"] - half).clip(lower=low, upper=high)
    out["ci_high"] = (out["mean"] + half).clip(lower=low, upper=high)
    out = out[[*by, "count", "mean", "std", "ci_low", "ci_high", *means]]
    return out.drop(columns=["_all"], errors="ignore")


def configurations(df: pd.DataFrame, x: str = "params", y: str = "test_error",
                   by: list[str] | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """One row per configuration (trials equal on every factor but the seed): mean x, y with interval.

    Columns: the `by` factors (default: every factor column, so only seeds are pooled),
    `count` (seeds), `x` (mean), `y` (mean), `std`, `ci_low`, `ci_high`. A frame without
    factor columns (a bare objectives table) keeps each row as its own configuration; rows
    sharing a `trial_id` (an Optuna search proposing a configuration twice) count once.
    """
    by = factor_columns(df, varying=False) if by is None else list(by)
    if "trial_id" in df:  # an Optuna repeat of a configuration shares its trial: not a replicate
        df = df[df["trial_id"].isna() | ~df["trial_id"].duplicated()]
    data = df if by else df.assign(_row=np.arange(len(df)))
    table = summarize(data.dropna(subset=[x]), by=by or ["_row"], metric=y, confidence=confidence,
                      means=(x,) if x != y else ())
    table = table.rename(columns={"mean": y}).drop(columns=["_row"], errors="ignore")
    return table[[*by, "count", x, y, "std", "ci_low", "ci_high"]]


def pareto_configs(df: pd.DataFrame, x: str = "params", y: str = "test_error",
                   maximize_x: bool = False, maximize_y: bool = False,
                   by: list[str] | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """Configurations (mean over seeds, with the t interval of y) not dominated on (x, y).

    The front is taken over seed means, so one lucky seed cannot crown its configuration.
    """
    table = configurations(df, x=x, y=y, by=by, confidence=confidence)
    return pareto(table, x=x, y=y, maximize_x=maximize_x, maximize_y=maximize_y)


def pareto(df: pd.DataFrame, x: str = "params", y: str = "test_error",
           maximize_x: bool = False, maximize_y: bool = False) -> pd.DataFrame:
    """Rows not dominated by any other row on (x, y), sorted by x; both minimised by default.

    A row is dominated when another is at least as good on both and better on one, so
    exact duplicates of a front point are all kept.
    """
    _require(df, [x, y])
    data = df.dropna(subset=[x, y])
    xs = data[x].to_numpy(dtype=float) * (-1 if maximize_x else 1)
    ys = data[y].to_numpy(dtype=float) * (-1 if maximize_y else 1)
    keep = np.zeros(len(data), dtype=bool)
    order = np.lexsort((ys, xs))  # by x, then y
    best_y = np.inf
    start = 0
    while start < len(order):  # sweep groups of equal x
        stop = start
        while stop < len(order) and xs[order[stop]] == xs[order[start]]:
            stop += 1
        group = order[start:stop]
        group_best = ys[group].min()
        if group_best < best_y:
            keep[group[ys[group] == group_best]] = True
            best_y = group_best
        start = stop
    return data[keep].sort_values(x, ascending=not maximize_x, kind="stable")


@dataclass(frozen=True)
class Comparison:
    """Paired comparison of two levels of a factor; differences are `a - b`."""

    factor: str
    a: str
    b: str
    metric: str
    matched_on: tuple[str, ...]  # pair_on plus the other factors that had to be equal
    n_pairs: int
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    t: float
    p_value: float
    pairs: pd.DataFrame = field(repr=False)  # one row per pair: keys, metric at a and b, diff
    missing: pd.DataFrame = field(repr=False)  # keys with only one level: which one is absent
    note: str = ""

    def as_row(self) -> dict[str, object]:
        """Flat dict for a comparison table."""
        return {"factor": self.factor, "a": self.a, "b": self.b, "metric": self.metric,
                "pairs": self.n_pairs, "missing_pairs": len(self.missing),
                "mean_diff(a-b)": self.mean_diff, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "p_value": self.p_value, "note": self.note}


def compare(df: pd.DataFrame, factor: str = "pattern", a: str = "dense", b: str = "partial",
            metric: str = "test_error", pair_on: str = "seed", match: list[str] | None = None,
            confidence: float = 0.95) -> Comparison:
    """Paired t-test of `metric` between levels `a` and `b` of `factor` over shared `pair_on`.

    The interval of the mean difference is cut at the range a difference can take ([-1, 1]
    for a fraction).

    Pairs also agree on `match`; by default these are the factors that vary within a level
    (crossed with `factor`), not the ones set by the level itself (a budget-matched growth,
    the partial pattern's `m`).
    """
    _require(df, [factor, pair_on, metric])
    levels = df[df[factor].astype(str).isin([str(a), str(b)])]
    for level in (a, b):
        if not (levels[factor].astype(str) == str(level)).any():
            known = sorted(df[factor].dropna().astype(str).unique())
            raise ConfigError(f"compare: no trial has {factor}={level!r}; levels present: {', '.join(known)}")
    keys = [pair_on, *(match if match is not None else crossed_factors(levels, factor, exclude=(pair_on,)))]
    _require(df, keys)
    wide = _paired_table(levels, factor, a, b, metric, keys)
    repeats = int(wide.pop("repeats").sum())
    pairs = wide.dropna(subset=["a", "b"]).assign(diff=lambda w: w["a"] - w["b"])
    missing = wide[wide["a"].isna() | wide["b"].isna()].assign(
        absent=lambda w: np.where(w["a"].isna(), str(a), str(b)))[[*keys, "absent"]]
    comparison = _paired_test(pairs, missing, factor, a, b, metric, tuple(keys), confidence)
    if repeats:
        note = f"{repeats} key(s) had several trials of one level: their mean was used"
        comparison = replace(comparison, note="; ".join(filter(None, [comparison.note, note])))
    return comparison


def _paired_table(levels: pd.DataFrame, factor: str, a: str, b: str, metric: str,
                  keys: list[str]) -> pd.DataFrame:
    """One row per key with the metric at a and at b (NaN when absent or failed)."""
    data = levels.assign(_level=np.where(levels[factor].astype(str) == str(a), "a", "b"))
    # groupby rather than pivot_table: dropna=False there fills in every key combination.
    grouped = data.groupby([*keys, "_level"], dropna=False)[metric]
    wide = grouped.mean().unstack("_level")
    wide["repeats"] = grouped.size().gt(1).groupby(level=list(range(len(keys))), dropna=False).sum()
    wide = wide.reindex(columns=["a", "b", "repeats"]).reset_index()
    wide.columns.name = None
    return wide


def _paired_test(pairs: pd.DataFrame, missing: pd.DataFrame, factor: str, a: str, b: str,
                 metric: str, keys: tuple[str, ...], confidence: float) -> Comparison:
    diffs = pairs["diff"].to_numpy(dtype=float)
    n = len(diffs)
    mean = float(diffs.mean()) if n else float("nan")
    std = float(diffs.std(ddof=1)) if n > 1 else float("nan")
    half = float(_t_half_width(pd.Series([std]), pd.Series([n]), confidence).iloc[0])
    t, p = (float("nan"), float("nan"))
    if n > 1:
        with warnings.catch_warnings():  # scipy warns on (near-)constant differences, noted below
            warnings.simplefilter("ignore", RuntimeWarning)
            from scipy import stats  # the paired test only: the summaries do not need scipy.stats

            test = stats.ttest_rel(pairs["a"].to_numpy(dtype=float), pairs["b"].to_numpy(dtype=float))
        t, p = float(test.statistic), float(test.pvalue)
    low, high = metric_range(metric)
    span = high - low  # a difference of two values in [low, high] lies in [-span, span]
    return Comparison(factor=factor, a=str(a), b=str(b), metric=metric, matched_on=keys,
                      n_pairs=n, mean_diff=mean, std_diff=std, ci_low=max(mean - half, -span),
                      ci_high=min(mean + half, span), t=t, p_value=p, pairs=pairs.reset_index(drop=True),
                      missing=missing.reset_index(drop=True), note=_notes(missing, n, mean, std))


def _notes(missing: pd.DataFrame, n: int, mean: float, std: float) -> str:
    """What a reader must know before trusting a comparison: absent pairs, too few pairs."""
    notes = []
    if len(missing):
        absent = ", ".join(f"{level}: {count}" for level, count in missing["absent"].value_counts().items())
        notes.append(f"{len(missing)} pair(s) missing ({absent} absent or failed)")
    if n < 2:
        notes.append(f"only {n} pair(s): no test")
    elif std <= 1e-9 * max(abs(mean), 1e-12):
        notes.append("the differences are all equal: the t-test is degenerate")
    return "; ".join(notes)


def crossed_factors(df: pd.DataFrame, factor: str, exclude: tuple[str, ...] = ("seed",)) -> list[str]:
    """Factors that take several values inside one level of `factor` (crossed with it).

    Factors constant within every level (a partial pattern's `m`, a budget-matched growth)
    are consequences of the level, not separate factors, and are left out.
    """
    candidates = [c for c in df.columns if is_factor(c) and c != factor and c not in exclude]
    per_level = df.astype({c: str for c in candidates}).groupby(df[factor].astype(str))
    # dropna=False: a key given in some trials of a level and absent (NaN) in others varies too
    return [c for c in candidates if (per_level[c].nunique(dropna=False) > 1).any()]


def _t_half_width(std: pd.Series, count: pd.Series, confidence: float) -> pd.Series:
    """Half width of the Student-t interval of a mean; NaN for fewer than two values."""
    dof = (count - 1).where(count > 1)
    quantile = stdtrit(dof, 0.5 + confidence / 2)  # = scipy.stats.t.ppf(0.5 + confidence / 2, dof)
    return quantile * std / np.sqrt(count)


def _require(df: pd.DataFrame, columns: list[str]) -> None:
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise ConfigError(f"column(s) {', '.join(absent)} not in the trials frame; "
                          f"known: {', '.join(map(str, df.columns))}")
