"""The study's answer in words, computed from its paired comparisons (or, for a search, its choice on validation).

One sentence per comparison of wiring patterns: the difference of the errors in points with its t
interval, and a verdict that follows the interval, never the p-value alone:

    dense - partial: test error +0.28 points [-2.51, +3.08] (95% t, 3 paired seeds), p = 0.71: no
    difference this study can resolve; it rules out dense being more than 2.51 points better or
    partial more than 3.08 points better. partial has 26% fewer parameters and 43% fewer multiply-adds.

The report (connectome/analysis/report.py), the end-of-run console summary and `connectome run --json`
open with these sentences.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pandas as pd

from connectome.analysis.results import MACS, Results, completed_rows, factor_columns
from connectome.analysis.stats import Comparison, compare, configurations, crossed_factors
from connectome.analysis.studyfile import budget_params
from connectome.analysis.units import (
    format_points, headline_metric, is_points, level_text, points_name, scale, selection_metric, with_points, words,
)

# Comparisons a study answers with, at most (dense against each other wiring, else every pair); a decoder study's
# every wiring minus prenorm is always listed (issue 28 compares a dozen).
MAX_COMPARISONS = 8
# The wiring every other one is compared against, in order of preference: DenseNet's dense pattern, or the
# standard pre-norm residual stream of a decoder (each other decoder wiring minus prenorm, as DenseFormer reports).
DECODER_REFERENCES = ("prenorm",)
REFERENCES = ("dense", *DECODER_REFERENCES)
# Size differences smaller than this fraction are "the same size".
SAME_SIZE = 0.01


@dataclass(frozen=True)
class Sentence:
    """One line of the answer, and what it says: resolved, unresolved, untested or best (a search's choice)."""

    text: str
    kind: str
    comparison: Comparison | None = None

    def __str__(self) -> str:
        return self.text


def results_answer(results: Results, metric: str | None = None, include_stopped: bool = False) -> list[Sentence]:
    """The answer of a loaded results directory (`connectome.analysis.load`), as its report opens with it."""
    search = "grid" if results.planned is None else "optuna"
    return study_answer(results.trials, metric=metric, search=search, budget=budget_params(results.path),
                        include_stopped=include_stopped)


def study_answer(trials: pd.DataFrame, metric: str | None = None, search: str = "grid",
                 budget: int | None = None, include_stopped: bool = False) -> list[Sentence]:
    """The answer of a study from its trials frame (any statuses): only trials that completed count.

    `search` is the study's search kind: a grid answers with its paired comparisons of patterns, an
    Optuna search with the configuration it chose on validation. `metric` defaults to the trials'
    headline metric (test error; bits per byte for language models).
    """
    metric = metric or headline_metric(trials)
    completed = with_points(completed_rows(trials, include_stopped))
    shown = points_name(metric)
    if shown not in completed or completed[shown].notna().sum() == 0:
        return [Sentence(f"No completed trial has `{metric}` yet: the study has no answer yet.", "untested")]
    completed = without_budget_growth(completed, budget)
    if search == "grid" and "pattern" in completed:
        completed = completed.assign(wiring=wiring_levels(completed))
    comparisons = pattern_comparisons(completed, shown) if search == "grid" else []
    return answer(completed, comparisons, metric=shown, budget=budget)


def without_budget_growth(trials: pd.DataFrame, budget: int | None) -> pd.DataFrame:
    """The trials without `growth` where a budget set it: the width each wiring was matched by is an outcome,
    so wirings pair on the configuration the study varies (its depths, options) and the seed, not on it."""
    return trials.drop(columns="growth") if budget is not None and "growth" in trials else trials


def pattern_comparisons(trials: pd.DataFrame, metric: str) -> list[Comparison]:
    """Paired comparisons of wirings: the reference (dense; prenorm for decoders) against each other wiring,
    else every pair (at most 8, except each decoder wiring against prenorm).

    The compared levels are the `wiring` column (`wiring_levels`) where the frame has one, else the patterns.
    """
    factor = "wiring" if "wiring" in trials else "pattern"
    if factor not in trials or "seed" not in trials:
        return []
    levels = sorted(trials[factor].dropna().astype(str).unique())
    anchor = next((ref for ref in REFERENCES if ref in levels), None)
    # each wiring minus the reference: a negative difference means the wiring is better
    pairs = [(b, anchor) if anchor in DECODER_REFERENCES else (anchor, b) for b in levels if b != anchor] if anchor \
        else list(itertools.combinations(levels, 2))
    limit = None if anchor in DECODER_REFERENCES else MAX_COMPARISONS
    return [compare(trials, factor=factor, a=a, b=b, metric=metric) for a, b in pairs[:limit]]


def wiring_levels(trials: pd.DataFrame) -> pd.Series:
    """Each trial's wiring: its pattern, plus the keys that only some patterns vary (a variant's own options).

    `residual` with and without `stochastic_depth: 0.5` are two wirings, not one pattern whose
    seeds are averaged over both; a factor every pattern takes alike (a grid's growth) stays a
    key the comparison pairs on.
    """
    pattern = trials["pattern"].astype(str)
    label = pattern.copy()
    for column in crossed_factors(trials, "pattern"):
        text = trials[column].map(level_text)
        if text.groupby(pattern).agg(frozenset).nunique() > 1:
            # named only where it tells a pattern's wirings apart (mhc's one form needs no `dynamic=True`)
            given = trials[column].notna() & (text.groupby(pattern).transform("nunique") > 1)
            label = label.where(~given, label + f", {column}=" + text)
    return label


def answer(trials: pd.DataFrame, comparisons: list[Comparison], metric: str = "test_error",
           budget: int | None = None) -> list[Sentence]:
    """One sentence per comparison with a pair; without any, the configuration chosen on validation."""
    paired = [c for c in comparisons if c.n_pairs > 0]
    if not paired:
        return [best_configuration(trials, metric)]
    return [comparison_sentence(c, trials, budget) for c in paired]


def comparison_sentence(c: Comparison, trials: pd.DataFrame | None = None, budget: int | None = None,
                        confidence: float = 0.95) -> Sentence:
    """`a - b: <metric> <diff> [low, high] (...), p = ...: <verdict>. <sizes>` from a paired comparison."""
    k = scale(c.metric)
    unit = " points" if _in_points(c.metric) else ""
    mean = c.mean_diff * k
    head = f"{c.a} - {c.b}: {_name(c.metric)} {_number(mean, c.metric, sign=True)}{unit}"
    if c.n_pairs < 2:
        text, kind = f"{head} from {_pairs(c)}: too few pairs for an interval, so no conclusion", "untested"
    else:
        low, high = sorted((c.ci_low * k, c.ci_high * k))
        interval = f"[{_number(low, c.metric, sign=True)}, {_number(high, c.metric, sign=True)}]"
        text = f"{head} {interval} ({confidence:.0%} t, {_pairs(c)}), {_p(c.p_value)}: "
        verdict, kind = _verdict(c, low, high, unit)
        text += verdict
    note = f" ({c.note})" if c.note else ""
    sizes = size_clause(trials, c, budget) if trials is not None else ""
    return Sentence(f"{text}{note}.{sizes}", kind, c)


def _verdict(c: Comparison, low: float, high: float, unit: str) -> tuple[str, str]:
    """What the interval of a - b (lower is better) says, and its kind."""
    better = "better" if unit else "lower"  # an error in points; another metric's direction is unknown here
    if low > 0:
        return (f"a resolved difference: {c.b} is {better} by between {_number(low, c.metric)} and "
                f"{_number(high, c.metric)}{unit}", "resolved")
    if high < 0:
        return (f"a resolved difference: {c.a} is {better} by between {_number(-high, c.metric)} and "
                f"{_number(-low, c.metric)}{unit}", "resolved")
    return (f"no difference this study can resolve; it rules out {c.a} being more than "
            f"{_number(-low, c.metric)}{unit} {better} or {c.b} more than {_number(high, c.metric)}{unit} {better}",
            "unresolved")


def size_clause(trials: pd.DataFrame, c: Comparison, budget: int | None = None) -> str:
    """` partial has 26% fewer parameters and 43% fewer multiply-adds.`, or that the sizes are matched."""
    if budget is not None:
        return f" The sizes are matched: the study sized every candidate to {budget:,} parameters."
    if "params" not in trials:
        return ""
    paired = _paired_trials(trials, c)
    level = paired[c.factor].astype(str)
    means = {x: paired.loc[level == x, ["params", *([MACS] if MACS in paired else [])]].astype(float).mean()
             for x in (c.a, c.b)}
    small, large = sorted((c.a, c.b), key=lambda x: means[x]["params"])
    changes = {col: 1 - means[small][col] / means[large][col] for col in means[small].index
               if means[large][col] > 0}
    if not changes or all(abs(v) < SAME_SIZE for v in changes.values()):
        return f" {c.a} and {c.b} have the same size (within {SAME_SIZE:.0%})."
    names = {"params": "parameters", MACS: "multiply-adds"}
    parts = [f"{abs(v):.0%} {'fewer' if v >= 0 else 'more'} {names[col]}" if abs(v) >= SAME_SIZE
             else f"as many {names[col]}" for col, v in changes.items()]
    return f" {small} has {' and '.join(parts)}."


def _paired_trials(trials: pd.DataFrame, c: Comparison) -> pd.DataFrame:
    """The trials of a comparison's complete pairs, so that sizes are compared over the same design."""
    keys = list(c.matched_on)
    # NaN-safe key match: pandas 3 keeps a missing value missing through astype(str), so say it in words
    text = lambda frame: frame[keys].astype(object).fillna("<missing>").astype(str).agg("|".join, axis=1)  # noqa: E731
    return trials[text(trials).isin(set(text(c.pairs)))]


def best_configuration(trials: pd.DataFrame, metric: str = "test_error_pts") -> Sentence:
    """The configuration with the lowest mean validation error over its seeds, with its test number."""
    data = with_points(trials)
    selection = selection_metric(data)  # validation, never test
    if selection not in data or data[selection].notna().sum() == 0:
        return Sentence(f"No trial recorded a validation accuracy, so no configuration can be chosen "
                        f"without looking at `{metric}`: no answer.", "untested")
    chosen = data.dropna(subset=[selection]).assign(_selection=lambda d: d[selection])  # metric may be selection
    table = configurations(chosen, x="_selection", y=metric)
    best = table.sort_values("_selection", kind="stable").iloc[0]
    factors = [f for f in factor_columns(data) if f in table]
    name = ", ".join(f"{f}={level_text(best[f])}" for f in factors if not _missing(best[f])) or "the only configuration"
    unit = " points" if _in_points(metric) else ""
    seeds = int(best["count"])
    spread = (f" [{_number(best['ci_low'], metric)}, {_number(best['ci_high'], metric)}] (95% t, {seeds} seeds)"
              if seeds > 1 else " (one seed: no interval)")
    chosen_unit = " points" if _in_points(selection) else ""
    return Sentence(f"Best of {len(table)} configuration(s), chosen on validation: {name} ({words(selection)} "
                    f"{_number(best['_selection'], selection)}{chosen_unit}); its {_name(metric)} is "
                    f"{_number(best[metric], metric)}{unit}{spread}.", "best")


def _pairs(c: Comparison) -> str:
    """`3 paired seeds`, or `6 pairs matched on seed, growth`."""
    if tuple(c.matched_on) == ("seed",):
        return f"{c.n_pairs} paired seed{'' if c.n_pairs == 1 else 's'}"
    return f"{c.n_pairs} pair{'' if c.n_pairs == 1 else 's'} matched on {', '.join(c.matched_on)}"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "no p-value"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2f}"


def _in_points(metric: str) -> bool:
    return is_points(points_name(metric))


def _name(metric: str) -> str:
    return words(metric) if _in_points(metric) else f"`{metric}`"


def _number(value: float, metric: str, sign: bool = False) -> str:
    """Points with fixed decimals; another metric's value to 4 significant digits."""
    if _in_points(metric):
        return format_points(value, sign=sign)
    return f"{value:+.4g}" if sign else f"{value:.4g}"


def _missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
