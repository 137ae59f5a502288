"""`report.md` and `report.html` for a results directory: counts, summary, comparisons, figures."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from connectome.analysis.answer import pattern_comparisons, results_answer, wiring_levels, without_budget_growth
from connectome.analysis.baseline import baseline_section
from connectome.analysis.document import Document
from connectome.analysis.figures import (plot_error_vs_params, plot_feature_usage, plot_pareto, plot_source_usage,
                                         plot_training_curves, replicates, save_figure)
from connectome.analysis.optuna_trials import OptunaTrials, load_optuna
from connectome.analysis.figures import label, varies_size
from connectome.analysis.learned_wiring import learned_wiring_section
from connectome.analysis.studyfile import budget_params
from connectome.analysis.results import MACS, Results, factor_columns, load
from connectome.analysis.stats import configurations, crossed_factors, metric_range, pareto_configs, summarize
from connectome.analysis.units import (
    DIRECTION, ERRORS, headline_metric, is_language_model, is_points, points_name, selection_metric, with_points, words,
)
from connectome.analysis.proxies import prescreen_section, proxy_section
from connectome.analysis.span import span_section
from connectome.analysis.topology import topology_section
from connectome.analysis.wiring import wiring_section
from connectome.analysis.usage import RefusedFileError, feature_usage, load_trial_model, model_usage
from connectome.errors import ConfigError, ConnectomeError
from connectome.files import write_atomic
from connectome.reference import PAPER_METRIC, paper_rows, trial_settings
from connectome.store.labels import label_from_trial_file, trial_label
from connectome.store.layout import StudyDir, TrialFiles
from connectome.testing.faults import fault

# Columns shown for individual trials in the failure and Pareto tables, when present.
TRIAL_COLUMNS = ("trial_id", "pattern", "depth", "growth", "m", "bottleneck", "seed")
SIZE_COLUMNS = ("params", MACS, "activations")
MAX_CURVE_GROUPS = 8
# Rows of a per-trial table (failures, missing pairs) shown before the rest is summarised.
MAX_ROWS = 30
# "Best trial" choices are made on validation data (its error in points); the test metric is only reported.
# Columns of a summary or comparison table that are in the metric's unit (points for an error).
STAT_COLUMNS = ("std", "ci_low", "ci_high", "mean_diff(a-b)")


def write_report(results_dir: str | Path, metric: str | None = None,
                 out_dir: str | Path | None = None, refused: list[str] | None = None,
                 include_stopped: bool = False) -> Path:
    """Write report.md, report.html and figures/ into the results dir; returns report.md.

    Files the report refuses to load (a model.pt that is not plain weights) are left out and
    their one-line reasons appended to `refused` when given. Trials a scheduler stopped early
    are listed but left out of the summary, comparisons and Pareto front unless `include_stopped`.
    """
    refused = [] if refused is None else refused
    results = load(results_dir)
    metric = metric or headline_metric(results.trials)  # test error; bits per byte for language models
    if len(results.completed(include_stopped)) and metric not in results.trials.columns:  # all failed: still a report
        numeric = results.trials.select_dtypes("number").columns
        raise ConfigError(f"metric {metric!r} is not a trial column of {results.path}; "
                          f"numeric columns: {', '.join(sorted(numeric))}")
    out = Path(out_dir) if out_dir is not None else results.path
    # one metric family from here on: every fraction shown as an error in points (analysis/units.py)
    results = replace(results, trials=with_points(results.trials), epochs=with_points(results.epochs))
    recorded, metric = metric, points_name(metric)
    doc = Document()
    doc.heading(f"Study `{results.study}`", level=1)
    _answer_section(doc, results, metric, include_stopped)
    _status_section(doc, results)
    _stopped_section(doc, results, include_stopped)
    completed = results.completed(include_stopped)
    if metric in completed and completed[metric].notna().any():
        _summary_section(doc, completed, metric)
        _paper_section(doc, completed)
        complete = not results.missing and len(completed) == len(results.trials)  # nothing failed, missing or stopped
        budget = budget_params(results.path)  # a budget's growth is each wiring's outcome: not paired on
        _comparison_section(doc, without_budget_growth(completed, budget), metric, complete=complete)
        baseline_section(doc, results, out)  # decoder wirings minus prenorm, costs, ranking (analysis/baseline.py)
        _pareto_section(doc, completed, metric, out, budget)
        span_section(doc, completed, metric, out)  # metric vs max_span of the span pattern (analysis/span.py)
        wiring_section(doc, completed, metric, out)  # random graphs per generator vs references (analysis/wiring.py)
    else:
        doc.text(f"No completed trial has `{recorded}` yet: no summary, comparison or Pareto front.")
    _figure_section(doc, results, metric, out, refused)
    learned_wiring_section(doc, results, out, refused)  # learned connection weights (analysis/learned_wiring.py)
    topology_section(doc, results, metric, out)  # topology vs accuracy (analysis/topology.py)
    proxy_section(doc, results, metric, out)  # zero-cost proxies vs accuracy (analysis/proxies.py)
    prescreen_section(doc, results.path)  # what a proxy pre-screen skipped (study/prescreen.py)
    _optuna_section(doc, load_optuna(results.path, results.trials), out)
    _study_file_section(doc, results.path)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(StudyDir(out).report_html, doc.to_html(f"connectome report: {results.study}"))
    fault("report")
    report = StudyDir(out).report_file
    write_atomic(report, doc.to_markdown(out))
    return report


def _answer_section(doc: Document, results: Results, metric: str, include_stopped: bool) -> None:
    """What the study found, in words (analysis/answer.py), and the unit every number below is in."""
    doc.heading("Answer")
    for sentence in results_answer(results, metric=metric, include_stopped=include_stopped):
        doc.answer(sentence.text)
    if is_language_model(results.trials):
        doc.text("These are language models: losses are in bits per byte (bpb) on fixed text windows, lower is "
                 "better. Choices (the Pareto front, a search's best) are made on validation bits per byte; test "
                 "numbers are only reported.")
    elif is_points(metric):
        doc.text(f"Throughout this report {DIRECTION}. Choices (the Pareto front, the trials of the usage maps, "
                 "a search's best) are made on validation data; test numbers are only reported.")


def _status_section(doc: Document, results: Results) -> None:
    """Generation time, trial counts, and the failed or diverged trials with their errors."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc.text(f"Generated {stamp} from `{results.path}`. {results.describe_counts()}.")
    if results.planned is not None:
        doc.text(f"Optuna: {results.ended} of {results.planned} planned trials ended (a configuration "
                 "proposed twice runs once and shares its row).")
    if results.missing:
        names = [_missing_name(results.path, t) for t in results.missing[:10]]
        doc.text(f"{len(results.missing)} trial(s) have no result yet (queued, running or "
                 f"interrupted): {'; '.join(names)}{' ...' if len(results.missing) > 10 else ''}.")
    status = results.trials.get("status")
    if status is not None and (status != "completed").any():
        bad = results.trials[status != "completed"]
        cols = [c for c in (*TRIAL_COLUMNS, "status", "error") if c in bad]
        table = bad[cols].copy()
        if "error" in table:
            table["error"] = table["error"].map(_last_line)
        doc.heading("Trials that did not complete", level=3)
        _capped_table(doc, table)


def _stopped_section(doc: Document, results: Results, included: bool) -> None:
    """Trials the study's scheduler stopped early: the epoch each reached, and whether statistics use them."""
    stopped = results.stopped()
    if stopped.empty:
        return
    use = ("included in the statistics below (asked for), although they trained fewer epochs" if included else
           "left out of the summary, comparisons and Pareto front (they trained fewer epochs and have no test metrics)")
    doc.heading("Trials stopped early by the scheduler", level=3)
    doc.text(f"{len(stopped)} trial(s) were stopped by the study's multi-fidelity scheduler on validation "
             f"error; {use}.")
    cols = [c for c in (*TRIAL_COLUMNS, "epochs_completed", selection_metric(stopped)) if c in stopped]
    _capped_table(doc, stopped[cols])


def _summary_section(doc: Document, completed: pd.DataFrame, metric: str) -> None:
    """Mean, spread and 95% interval of the metric per combination of varied factors."""
    by = factor_columns(completed) or (["pattern"] if "pattern" in completed else [])
    sizes = tuple(c for c in ("params", MACS) if c in completed and c != metric)
    table = summarize(completed, by=by, metric=metric, means=sizes)  # sizes: group means
    doc.heading("Summary")
    grouping = ", ".join(f"`{c}`" for c in by) or "all completed trials"
    doc.text(f"`{metric}` over completed trials, grouped by {grouping}: count, mean, standard "
             "deviation and 95% Student-t confidence interval of the mean (seeds are the replicates)"
             f"{_cut_note(metric)}. `{MACS}`: multiply-adds per {_unit(completed)}.")
    doc.table(table.rename(columns={"mean": metric}), points=_stat_columns(metric))


def _paper_section(doc: Document, completed: pd.DataFrame) -> None:
    """Table 1's figure next to ours for trials that share a row's preset and dataset setting."""
    rows = paper_rows(completed)
    if rows.empty:
        return
    settings = trial_settings(completed)
    lines = []
    for row in rows.itertuples():
        recorded = PAPER_METRIC.get(row.setting, "test_error")
        metric = points_name(recorded)
        ours = completed[(completed["preset"] == row.preset) & (settings == row.setting)
                         & (completed["depth"] == row.depth if "depth" in completed else True)]
        if metric not in ours:
            continue
        s = summarize(ours, by=[], metric=metric).iloc[0] if ours[metric].notna().any() else None
        paper = row.error * 100 if is_points(metric) else row.error
        lines.append({"method": row.method, "depth": row.depth, "setting": row.setting, "preset": row.preset,
                      "paper_error_pts": paper, "metric": metric, "trials": 0 if s is None else int(s["count"]),
                      "mean": None if s is None else s["mean"], "ci_low": None if s is None else s["ci_low"],
                      "ci_high": None if s is None else s["ci_high"]})
    if not lines:
        return
    doc.heading("Against the paper's Table 1")
    doc.text("Table 1 of arXiv 1608.06993 v1 (one run per network in the paper) next to this study's "
             "trials with the same preset and dataset setting: mean and 95% t interval over seeds. The "
             "paper reports CIFAR's test error at the end of training on all 50,000 training images and "
             "SVHN's at the epoch of lowest validation error; a study that trains shorter or on fewer "
             "images does not reproduce the row.")
    doc.table(pd.DataFrame(lines), points=("mean", *STAT_COLUMNS))


def _comparison_section(doc: Document, trials: pd.DataFrame, metric: str, complete: bool = False) -> None:
    """Paired tests between wiring patterns over shared seeds.

    With every trial `complete`, a comparison without any pair was never planned on shared
    configurations (random graphs whose growth a budget sets): it is said so, not listed as missing.
    """
    if is_language_model(trials):  # each variant (partial's m) a wiring of its own, as the answer pairs them
        trials, _ = _by_wiring(trials)
    comparisons = pattern_comparisons(trials, metric)
    if not comparisons:
        return
    unplanned = [c for c in comparisons if complete and c.n_pairs == 0]
    comparisons = [c for c in comparisons if not (complete and c.n_pairs == 0)]
    doc.heading("Comparisons")
    if comparisons:
        doc.text(f"Paired differences of `{metric}` (a - b) between patterns over completed trials "
                 "sharing the seed and every factor crossed with the pattern; 95% t interval"
                 f"{_difference_cut_note(metric)} and paired t-test p-value. A pair is missing when one side "
                 "failed, diverged or has not run yet.")
        doc.table(pd.DataFrame([c.as_row() for c in comparisons]), points=_stat_columns(metric))
    for c in unplanned:
        doc.text(f"{c.a} vs {c.b}: no pair, although every trial completed: the two levels share no "
                 f"configuration (matched on {', '.join(c.matched_on)}), so nothing failed; the study "
                 "did not plan this comparison, and it is not tabled.")
    for c in comparisons:
        if len(c.missing):
            doc.text(f"Missing pairs for {c.a} vs {c.b} (matched on {', '.join(c.matched_on)}):")
            _capped_table(doc, c.missing)


def _pareto_section(doc: Document, completed: pd.DataFrame, metric: str, out: Path, budget: int | None = None) -> None:
    """The configurations no other beats on size and validation error, with the reported metric beside them."""
    if "params" not in completed:
        return
    doc.heading("Pareto front")
    selection = selection_metric(completed)
    if selection in completed and completed[selection].notna().any():
        y, maximize = selection, False
        how = (f"Configurations (completed trials equal on every factor but the seed) not dominated on "
               f"(`params` min, mean `{selection}` min over seeds): the front is chosen on validation "
               f"data, and the mean `{metric}` of each is reported beside it")
    else:  # nothing to select on: describe the front of the reported metric itself, and say so
        y, maximize = metric, metric.endswith("_acc")
        how = (f"Configurations not dominated on (`params`, mean `{metric}` over seeds). No trial has "
               "a validation accuracy, so this front is drawn on the reported metric (a description, not a "
               "selection)")
    front = pareto_configs(completed, x="params", y=y, maximize_y=maximize)
    if y != metric and metric in completed:
        reported = configurations(completed, x="params", y=metric)[[*_config_keys(completed), metric]]
        front = front.merge(reported, on=_config_keys(completed), how="left")
    doc.text(f"{how}; `count` seeds, 95% t interval of the mean of `{y}`{_cut_note(y)}. A single lucky seed "
             "does not move the front.")
    cols = [*factor_columns(completed), "count", "params", y, "ci_low", "ci_high", metric]
    doc.table(front[[c for c in dict.fromkeys(cols) if c in front]], points=_stat_columns(y))
    shown, hue = _by_wiring(completed, budget)
    fig = plot_pareto(shown, x="params", y=y, maximize_y=maximize, hue=hue)
    paths = save_figure(fig, StudyDir(out).figure("pareto_params"))
    doc.figure(*paths, caption=f"{label(y)} vs parameters per configuration: {_marks_note(completed, y)}; "
                               "black line and circles: the Pareto front of configurations.")


def _figure_section(doc: Document, results: Results, metric: str, out: Path, refused: list[str]) -> None:
    doc.heading("Figures")
    budget = budget_params(results.path)  # matched sizes: the configurations are no size series
    completed, hue = _by_wiring(results.completed(), budget)
    figures = StudyDir(out).figures
    joined = False if budget is not None else varies_size(completed, hue)
    for size in ("params", MACS):
        if {size, metric, hue} <= set(completed.columns) and completed[metric].notna().any():
            fig = plot_error_vs_params(completed, x=size, y=metric, hue=hue, joined=joined)
            paths = save_figure(fig, figures / f"error_vs_{size}")
            doc.figure(*paths, caption=_size_caption(completed, size, metric, hue, joined, budget))
    _curves_figure(doc, results, figures)
    _usage_figures(doc, results, figures, refused)


def _by_wiring(completed: pd.DataFrame, budget: int | None = None) -> tuple[pd.DataFrame, str]:
    """The trials and the factor the size figures colour by: the pattern, or the `wiring` (the pattern
    and a variant's own options, as the answer compares them) where a variant's options split a pattern."""
    hue = main_factor(completed)
    if hue != "pattern" or "seed" not in completed:
        return completed, hue
    wiring = wiring_levels(without_budget_growth(completed, budget))
    if (wiring == completed["pattern"].astype(str)).all():
        return completed, hue
    return completed.assign(wiring=wiring), "wiring"


def _curves_figure(doc: Document, results: Results, figures: Path) -> None:
    """Training curves grouped by pattern and, when few enough, the other varied factors."""
    if results.epochs.empty or "pattern" not in results.trials:
        doc.text("No per-epoch records: no training curves.")
        return
    completed = results.completed()
    if results.epochs["epoch"].nunique() < 2:  # one point per group: no curve, and no visible band
        doc.text("Every trial trained a single epoch: no training curves (the summary and comparisons above "
                 "hold the end-of-training numbers).")
        return
    completed, main = _by_wiring(completed, budget_params(results.path))
    hue = [main, *crossed_factors(completed, main)]
    if completed.groupby(hue, dropna=False).ngroups > MAX_CURVE_GROUPS:
        hue = [main]
    if is_language_model(results.trials):
        fig = plot_training_curves(results.epochs, completed, metrics=("train_bpb", "val_bpb"), hue=hue)
        paths = save_figure(fig, figures / "training_curves")
        doc.figure(*paths, caption=f"Training and validation bits per byte per evaluation interval of completed "
                                   f"trials per {', '.join(hue)}: mean over seeds, band: 95% t interval of the mean.")
        return
    # the paper's Figures 3 and 6 show test error per epoch, when the trials logged it
    tested = "test_error_pts" in results.epochs and results.epochs["test_error_pts"].notna().any()
    metrics = ("train_loss", "test_error_pts") if tested else ("train_loss", "val_error_pts")
    fig = plot_training_curves(results.epochs, completed, metrics=metrics, hue=hue)
    paths = save_figure(fig, figures / "training_curves")
    groups = [trials for _, trials in completed.groupby(hue, dropna=False)]
    pooled = any("configuration" in replicates(trials) for trials in groups)
    over = "the group's trials (seeds, and the configurations a group pools, as its legend says)" if pooled else "seeds"
    band = (f"mean over {over}, band: 95% t interval of the mean" if any(len(t) > 1 for t in groups)
            else "one trial per group: no interval")
    shown = "training loss and test error" if tested else "training loss and validation error"
    doc.figure(*paths, caption=f"{shown.capitalize()} per epoch of completed trials per {', '.join(hue)} "
                               f"(arXiv 1608.06993 v1, Figs. 3 and 6): {band}."
                               + ("" if tested else " Test error per epoch needs train.test_each_epoch: true."))


def main_factor(trials: pd.DataFrame) -> str:
    """The column figures group by: the network family when several are compared, else the pattern."""
    if "family" in trials and trials["family"].nunique(dropna=True) > 1:
        return "family"
    return "pattern"


def _usage_figures(doc: Document, results: Results, figures: Path, refused: list[str]) -> None:
    """Source-usage heatmaps (arXiv 1608.06993 v1, Fig. 4) of each pattern's trial chosen on validation."""
    completed = results.completed()
    if "pattern" not in completed or completed.empty:
        return
    if is_language_model(results.trials):
        doc.text("No source- or feature-usage heatmaps: they read the first conv of each layer and the classifier "
                 "of an image network (arXiv 1608.06993 v1, Fig. 4), which a decoder does not have.")
        return
    sd = StudyDir(results.path)
    kept = completed[[_has_model(sd.trial(str(t))) for t in completed["trial_id"]]]
    if kept.empty:
        doc.text("No completed trial kept `spec.json` and `model.pt`: no source-usage heatmap.")
        return
    chosen, how = select_per_pattern(kept)
    factors = factor_columns(completed)
    for _, row in chosen.iterrows():
        pattern, trial_id = row["pattern"], row["trial_id"]
        name = trial_label(row, seed=row.get("seed"), keys=factors)
        try:
            model = load_trial_model(sd.trial(str(trial_id)).dir)
            usage = model_usage(model)
        except RefusedFileError as err:
            refused.append(str(err))
            doc.text(f"No source-usage heatmap for `{trial_id}` ({pattern}): {err}")
            continue
        except (ConnectomeError, OSError, RuntimeError, ValueError, KeyError) as err:
            doc.text(f"No source-usage heatmap for {name} (`{trial_id}`): {err}")
            continue
        if all(np.isnan(m).all() for m in usage):
            doc.text(f"No source-usage heatmap for {name}: its layers read joins (gates, means), not earlier "
                     "layers, so no weight belongs to one source; the whole-network map below follows the joins.")
        else:
            fig = plot_source_usage(usage, title=f"source usage: {name}")
            paths = save_figure(fig, figures / f"source_usage_{_slug(pattern)}")
            summed = (" Its layers sum their inputs (residual): one weight serves every source, so each "
                      "row is uniform." if _sums_inputs(sd.trial(str(trial_id))) else "")
            doc.figure(*paths, caption=f"Source usage of {name} (arXiv 1608.06993 v1, Fig. 4), the {pattern} trial "
                                       f"chosen by {how}: per-source weight norm of each layer's first conv, divided "
                                       f"by the layer's largest; grey = no edge.{summed}")

        fig = plot_feature_usage(feature_usage(model), title=f"feature usage: {name}, whole network")
        paths = save_figure(fig, figures / f"feature_usage_{_slug(pattern)}")
        doc.figure(*paths, folded=True, caption=f"Feature usage of {name} over the whole network (arXiv 1608.06993 v1, "
                                   f"Fig. 4), the {pattern} trial chosen by {how}: each column a conv layer, "
                                   "transition (T) or the classifier (C), each row an input feature map; l2 "
                                   "norm of the weights on that map divided by the column's largest; grey = "
                                   "not read.")

def select_per_pattern(trials: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One trial per pattern, chosen on validation error (never on a test metric), and why."""
    trials = with_points(trials)
    selection = selection_metric(trials)
    if selection in trials and trials[selection].notna().any():
        ranked = trials.dropna(subset=[selection]).sort_values(
            [selection, "trial_id"], ascending=[True, True], kind="stable")
        return ranked.groupby("pattern").head(1), f"lowest {words(selection)}"
    # Without a validation metric there is no honest "best": show the first trial, saying so.
    return (trials.sort_values("trial_id", kind="stable").groupby("pattern").head(1),
            "first by trial id: no validation accuracy to select on")


def _optuna_section(doc: Document, studies: list[OptunaTrials], out: Path) -> None:
    """Pareto front of each Optuna study: its first two objectives, or its one against params."""
    for study in studies:
        doc.heading(f"Optuna study `{study.study_name}`")
        frame = with_points(study.frame)
        # an accuracy objective is shown as its error in points, minimised
        objectives = [(points_name(o), False if o in ERRORS else m) for o, m in zip(study.objectives, study.maximize)]
        if len(objectives) >= 2:
            (x, mx), (y, my) = objectives[:2]
            if y in SIZE_COLUMNS and x not in SIZE_COLUMNS:  # size on x, as in the other figures
                (x, mx), (y, my) = (y, my), (x, mx)
        elif "params" in frame and objectives[0][0] != "params":
            (y, my), x, mx = objectives[0], "params", False
        else:
            doc.text(f"{len(frame)} completed trial(s), one objective `{objectives[0][0]}` and "
                     "no parameter counts to trade it against: no front to draw.")
            continue
        front = pareto_configs(frame, x=x, y=y, maximize_x=mx, maximize_y=my)
        distinct = frame["trial_id"].nunique() if "trial_id" in frame else len(frame)
        doc.text(f"{len(frame)} completed Optuna trial(s) ({distinct} distinct, a repeated proposal counts "
                 f"once); {len(front)} configuration(s) on the front of `{x}` "
                 f"({'max' if mx else 'min'}) vs `{y}` ({'max' if my else 'min'}), over the mean of each "
                 "configuration's seeds.")
        cols = [*factor_columns(frame), "count", x, y, "ci_low", "ci_high"]
        doc.table(front[[c for c in dict.fromkeys(cols) if c in front]], points=_stat_columns(y))
        fig = plot_pareto(frame, x=x, y=y, maximize_x=mx, maximize_y=my, hue="pattern",
                          title=f"Optuna study {study.study_name}: Pareto front")
        paths = save_figure(fig, StudyDir(out).figure(f"optuna_pareto_{_slug(study.study_name)}"))
        doc.figure(*paths, caption=f"Optuna study {study.study_name}: {label(y)} vs {label(x)} per configuration: "
                                   f"{_marks_note(frame, y)}; black line and circles: the Pareto front.")


def _study_file_section(doc: Document, path: Path) -> None:
    study_file = StudyDir(path).study_file
    if study_file.exists():
        doc.heading("Study file")
        doc.code(study_file.read_text())


def _missing_name(path: Path, trial_id: str) -> str:
    """`dense, growth=12, seed 0 (dense-1a2b3c4d5e)` from the trial's config.json, else its id."""
    name = label_from_trial_file(StudyDir(path).trial(trial_id).config)
    return f"{name} (`{trial_id}`)" if name else f"`{trial_id}`"


def _capped_table(doc: Document, table: pd.DataFrame) -> None:
    """A table of at most MAX_ROWS rows, saying how many were left out."""
    doc.table(table.head(MAX_ROWS))
    if len(table) > MAX_ROWS:
        doc.text(f"... and {len(table) - MAX_ROWS} more (see `connectome.analysis.load`).")


def _size_caption(completed: pd.DataFrame, size: str, metric: str, hue: str = "pattern",
                  joined: bool = False, budget: int | None = None) -> str:
    """What the error-vs-size figure shows: curves or separate marks, intervals or single trials."""
    what = f"multiply-adds per {_unit(completed)}" if size == MACS else size
    shape = f"each {hue}'s configurations joined into a curve" if joined else "one mark per configuration"
    if budget is not None:
        shape += f" (every candidate matched to {budget:,} parameters by its growth rate: no size series)"
    return (f"{label(metric)} vs {what} per {hue} (arXiv 1608.06993 v1, Fig. 5), {shape}: "
            f"{_marks_note(completed, metric)}.")


def _unit(trials: pd.DataFrame) -> str:
    """What `flops` counts per: an image, or a token of a language model."""
    return "token" if is_language_model(trials) else "image"


def _marks_note(trials: pd.DataFrame, metric: str) -> str:
    """What a configuration's mark and bars are: a seed mean and its interval, or one trial."""
    x = "params" if "params" in trials and metric != "params" else metric
    if not configurations(trials.dropna(subset=[metric]), x=x, y=metric)["count"].gt(1).any():
        return "one trial per configuration, so no interval"
    return (f"marks: mean over seeds; bars: 95% t interval of the mean{_cut_note(metric)}; "
            "faint dots: single trials")


def _stat_columns(metric: str) -> tuple[str, ...]:
    """The columns of a statistics table in the metric's unit: fixed decimals when that unit is points."""
    return STAT_COLUMNS if is_points(metric) else ()


def _config_keys(completed: pd.DataFrame) -> list[str]:
    """The columns that identify a configuration (as `configurations` groups them)."""
    return factor_columns(completed, varying=False)


def _cut_note(metric: str) -> str:
    """`, cut at [0, 100]` for a bounded metric (its interval never leaves the possible range)."""
    low, high = metric_range(metric)
    if low == 0.0 and high < float("inf"):
        return f", cut at [0, {high:g}]"
    return ", cut at 0" if low == 0.0 else ""


def _difference_cut_note(metric: str) -> str:
    """` (cut at [-1, 1])` when the metric is bounded: a difference cannot leave that range."""
    low, high = metric_range(metric)
    span = high - low
    return f" (cut at [{-span:g}, {span:g}])" if span < float("inf") else ""


def _sums_inputs(files: TrialFiles) -> bool:
    """Whether a trial's network has layers that sum their inputs (so usage rows are uniform)."""
    from connectome.spec import NetworkSpec

    try:
        spec = NetworkSpec.from_json(files.spec.read_text())
    except (ConnectomeError, OSError, ValueError):
        return False
    return any(n.agg == "sum" and n.op not in ("input", "identity") for b in spec.blocks for n in b.nodes)


def _has_model(files: TrialFiles) -> bool:
    return files.spec.exists() and files.model.exists()


def _last_line(error: object) -> object:
    """The exception line of a traceback, shortened for a table cell."""
    if not isinstance(error, str) or not error.strip():
        return error
    return error.strip().splitlines()[-1][:160]


def _slug(name: object) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(name))
