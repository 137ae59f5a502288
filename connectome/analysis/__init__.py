"""Analysis of a results directory: pandas frames, statistics, the paper's figures, the report."""
from connectome.analysis.figures import (plot_error_vs_params, plot_pareto, plot_source_usage,
                                         plot_training_curves, save_figure)
from connectome.analysis.optuna_trials import OptunaTrials, load_optuna
from connectome.analysis.report import write_report
from connectome.analysis.results import Results, factor_columns, load
from connectome.analysis.stats import Comparison, compare, crossed_factors, pareto, summarize
from connectome.analysis.usage import load_trial_model, model_usage, normalize_usage, trial_usage

__all__ = [
    "Comparison", "OptunaTrials", "Results", "compare", "crossed_factors", "factor_columns", "load", "load_optuna",
    "load_trial_model", "model_usage", "normalize_usage", "pareto", "plot_error_vs_params",
    "plot_pareto", "plot_source_usage", "plot_training_curves", "save_figure", "summarize",
    "trial_usage", "write_report",
]
