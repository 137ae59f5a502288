"""Analysis of a results directory: pandas frames, statistics, the paper's figures, the report.

The paper is arXiv 1608.06993 v1 (Huang et al., 2016); figure numbers are v1's.

    from connectome.analysis import load, summarize, compare, pareto, results_answer, write_report
    results = load("results/smoke")                 # works while the study is still running
    print(results.describe_counts())                # 4 trials: 4 completed, 0 diverged, ...
    for line in results_answer(results): print(line)  # the answer in words, as the report opens
    done = results.completed()                      # flat rows; results.epochs: per-epoch rows
    summarize(done, by=["pattern"], metric="test_error")      # count, mean, std, 95% t interval
    compare(done, factor="pattern", a="dense", b="partial")   # paired over seeds: diff, CI, p
    pareto_configs(done, x="params", y="test_error")  # non-dominated configurations (seed means)
    results.tidy_epochs()                           # trial x epoch x metric rows with factors
    write_report("results/smoke")                   # report.md, report.html, figures/*.png|svg

Metrics that are fractions (accuracy, error) stay fractions in every frame; what a reader sees (the
report's tables, figures and sentences, the console summary) is the error in percentage points
(`with_points(frame)` adds `test_error_pts`, `best_val_error_pts`, ...; lower is better).
Statistics use completed trials only in the report; failed, diverged and missing trials are
counted and listed, and pairs they leave incomplete are named in each comparison.
"""
from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it. Imported on first use (PEP 562), so that a caller
# of one statistics function (the driver's summary table) does not import matplotlib, Optuna
# and the trainer with the figures and the report.
_EXPORTS = {
    # not `answer` itself: the name is its module's (connectome.analysis.answer)
    "connectome.analysis.answer": ["Sentence", "pattern_comparisons", "results_answer", "study_answer"],
    "connectome.analysis.figures": ["plot_error_vs_params", "plot_feature_usage", "plot_pareto",
                                    "plot_source_usage", "plot_training_curves", "save_figure"],
    "connectome.analysis.optuna_trials": ["OptunaTrials", "load_optuna"],
    "connectome.analysis.report": ["write_report"],
    "connectome.analysis.results": ["MACS", "Results", "column_group", "factor_columns", "load", "order_columns",
                                    "tidy_epochs"],
    "connectome.analysis.stats": ["Comparison", "compare", "configurations", "crossed_factors", "metric_range",
                                  "pareto", "pareto_configs", "summarize"],
    "connectome.analysis.units": ["points_name", "with_points"],
    "connectome.analysis.usage": ["feature_usage", "load_trial_model", "model_usage", "normalize_usage",
                                  "trial_usage"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


__all__ = [
    "MACS", "Comparison", "OptunaTrials", "Results", "Sentence", "column_group", "compare",
    "configurations", "pattern_comparisons", "points_name", "results_answer", "study_answer", "with_points",
    "crossed_factors", "factor_columns", "feature_usage", "load", "load_optuna", "load_trial_model", "metric_range",
    "model_usage", "normalize_usage", "order_columns", "pareto", "pareto_configs", "plot_error_vs_params",
    "plot_feature_usage", "plot_pareto", "plot_source_usage", "plot_training_curves", "save_figure", "summarize",
    "tidy_epochs", "trial_usage", "write_report",
]
