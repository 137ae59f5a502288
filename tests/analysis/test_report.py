"""write_report end to end on a fake results directory, and on the real smoke study (slow).

Tests of the text take `text_only` (figures built, not drawn); the ones that call check_figures draw
those figures (`draw_only`), or all of them where every figure is the point.
"""
import json
import re
from pathlib import Path

import optuna
import pytest
import torch

from connectome.analysis import MACS, load, load_optuna, load_trial_model, write_report
from connectome.store.layout import StudyDir, TrialFiles

FIGURES = ("error_vs_params", f"error_vs_{MACS}", "training_curves", "pareto_params", "source_usage_dense",
           "feature_usage_dense", "source_usage_partial", "feature_usage_partial")


def check_figures(figures: Path, stems) -> None:
    for stem in stems:
        for suffix in (".png", ".svg"):
            file = figures / f"{stem}{suffix}"
            assert file.exists() and file.stat().st_size > 1000, file


def add_optuna_study(path: Path, storage: str | optuna.storages.BaseStorage) -> None:
    """An Optuna study over the fake trials: objectives test_error and params, both minimised."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="fake", storage=storage, directions=["minimize", "minimize"])
    trials = load(path).completed()
    for row in trials.itertuples():
        study.add_trial(optuna.trial.create_trial(
            params={"growth": row.growth}, distributions={"growth": optuna.distributions.IntDistribution(4, 8)},
            values=[row.test_error, row.params], user_attrs={"trial_id": row.trial_id}))
    (path / "study.yaml").write_text("name: fake\nsearch:\n  kind: optuna\n  objectives:\n"
                                     "    - {metric: test_error, mode: min}\n    - {metric: params, mode: min}\n")


def test_report_of_a_partly_failed_running_study(results_dir):
    report = write_report(results_dir)
    assert report == results_dir / "report.md"
    text = report.read_text()
    assert "12 trials: 9 completed, 1 diverged, 1 failed, 1 missing" in text
    assert "RuntimeError: CUDA out of memory" in text  # the failed trial's last error line
    assert "`dense-g8-s2`" in text  # the trial with no result yet is named
    # dense - partial is exactly -3 points on every complete pair; one pair lacks its dense twin
    row = next(line for line in text.splitlines() if line.startswith("| pattern | dense | partial"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:7] == ["4", "1", "-3.00"]  # points
    assert "| 2 | 4 | dense |" in text  # seed 2, growth 4: dense diverged
    check_figures(results_dir / "figures", FIGURES)
    for link in re.findall(r"\]\((figures/[^)]+)\)", text):
        assert (results_dir / link).exists()


def test_missing_trials_are_named_by_what_they_are(results_dir, text_only):
    (results_dir / "trials" / "dense-g8-s2" / "config.json").write_text(json.dumps(
        {"trial_id": "dense-g8-s2", "assignment": {"pattern": "dense", "growth": 8}, "config": {"seed": 2}}))
    text = write_report(results_dir).read_text()
    assert "1 trial(s) have no result yet (queued, running or interrupted): dense, growth=8, seed 2 " \
           "(`dense-g8-s2`)." in text


def test_html_report_is_self_contained(results_dir, text_only):
    write_report(results_dir)
    html = (results_dir / "report.html").read_text()
    assert html.count("<img") == len(FIGURES) == html.count("src='data:image/png;base64,")
    assert "<table>" in html and "CUDA out of memory" in html
    assert "<h1>Study <code>fake</code></h1>" in html and "`" not in html.split("<pre>")[0]


def test_report_to_another_folder_leaves_results_untouched(results_dir, tmp_path, text_only):
    out = tmp_path / "elsewhere"
    write_report(results_dir, metric="best_val_acc", out_dir=out)
    assert (out / "report.md").exists() and not (results_dir / "report.md").exists()
    assert "`best_val_error_pts` over completed trials" in (out / "report.md").read_text()


def test_captions_name_trials_and_intervals_not_hashes(results_dir, text_only):
    text = write_report(results_dir).read_text()
    captions = [line for line in text.splitlines() if line.startswith("*") and "(arXiv 1608.06993 v1, Fig" in line]
    assert len(captions) == 7  # error vs params, vs MACs, training curves, two heatmaps, two whole-network maps
    assert not any(re.search(r"(dense|partial)-g\d-s\d", c) for c in captions)  # no trial ids
    assert all("s.d." not in c for c in captions)
    usage = next(c for c in captions if c.startswith("*Source usage of dense"))
    assert "Source usage of dense, growth=8, seed 0 (arXiv 1608.06993 v1, Fig. 4)" in usage  # pattern, factors, seed
    assert "residual" not in usage  # no layer of this network sums its inputs
    size = next(c for c in captions if "vs params" in c)
    assert "joined into a curve" in size and "bars: 95% t interval of the mean, cut at [0, 100]" in size


def test_a_budget_matched_study_draws_no_size_curve(results_dir, text_only):
    """Candidates matched to one parameter count are no size series: marks, and the caption says why."""
    study = results_dir / "study.yaml"
    study.write_text(study.read_text() + "budget: {params: 3000}\n")
    text = write_report(results_dir).read_text()
    size = next(line for line in text.splitlines() if line.startswith("*test error (points) vs params"))
    assert "one mark per configuration (every candidate matched to 3,000 parameters" in size
    assert "joined into a curve" not in size


def test_captions_of_single_trial_configurations_claim_no_interval(results_dir, text_only):
    add_optuna_study(results_dir, f"sqlite:///{results_dir / 'optuna.db'}")
    text = write_report(results_dir).read_text()
    caption = next(line for line in text.splitlines() if line.startswith("*Optuna study fake:"))
    # the Optuna frame has the trials' factors (pattern, growth) and seed: seeds are pooled
    assert "bars: 95% t interval" in caption
    single = load(results_dir).completed().query("seed == 0")
    from connectome.analysis.report import _marks_note
    assert _marks_note(single, "test_error") == "one trial per configuration, so no interval"


def test_report_intervals_stay_inside_the_metric_range(results_dir, text_only):
    sd = StudyDir(results_dir)
    entries = list(sd.journal_entries())
    for entry in entries:  # two far-apart seeds: the raw t interval leaves [0, 1]
        errors = {"dense-g4-s0": 0.05, "dense-g4-s1": 0.95}
        if entry["row"]["trial_id"] in errors:
            entry["row"]["test_error"] = errors[entry["row"]["trial_id"]]
    sd.journal.write_text("".join(json.dumps(e) + "\n" for e in entries))
    for stale in (sd.trials_parquet, sd.epochs_parquet, sd.compacted_file):
        stale.unlink()
    text = write_report(results_dir).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| dense | 4 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:8] == ["–", "2", "50.00", "63.64", "0.00", "100.00"]  # m, count, mean, std, ci cut at 0 and 100


def test_pareto_table_lists_configurations_with_seed_counts(results_dir, text_only):
    text = write_report(results_dir).read_text()
    section = text.split("## Pareto front")[1].split("##")[0]
    header = next(line for line in section.splitlines() if line.startswith("| pattern"))
    assert header.startswith("| pattern | growth | m | count | params | best_val_error_pts | ci_low | ci_high | "
                             "test_error_pts |")
    assert "| partial | 4 | 8 | 3 |" in section  # three seeds of partial growth 4, one row


def test_report_of_a_study_with_nothing_finished(tmp_path, text_only):
    (tmp_path / "early" / "trials" / "t1").mkdir(parents=True)
    StudyDir(tmp_path / "early").write_plan(["t1"])  # planned, not finished
    text = write_report(tmp_path / "early").read_text()
    assert "1 trials: 0 completed, 0 diverged, 0 failed, 1 missing" in text
    assert "No completed trial has `test_error` yet" in text


def test_report_draws_the_optuna_pareto_front(results_dir, draw_only):
    draw_only("optuna_pareto_fake")
    add_optuna_study(results_dir, f"sqlite:///{results_dir / 'optuna.db'}")
    [study] = load_optuna(results_dir, load(results_dir).trials)
    assert study.objectives == ("test_error", "params") and study.maximize == (False, False)
    assert study.frame["pattern"].notna().all()  # joined with the trials by trial_id
    text = write_report(results_dir).read_text()
    assert "## Optuna study `fake`" in text and "9 completed Optuna trial(s) (9 distinct, a repeated proposal counts once); 4 configuration(s) on the front" in text
    check_figures(results_dir / "figures", ["optuna_pareto_fake"])


def test_optuna_journal_storage(results_dir):
    from optuna.storages.journal import JournalFileBackend

    add_optuna_study(results_dir, optuna.storages.JournalStorage(
        JournalFileBackend(str(results_dir / "optuna.journal"))))
    [study] = load_optuna(results_dir)
    assert len(study.frame) == 9 and {"test_error", "params"} <= set(study.frame.columns)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_report_of_the_real_smoke_study(smoke_results):
    """`connectome run studies/smoke.yaml` writes the report, every figure drawn from the real trials.

    `connectome report` is the same write_report; its command line: tests/cli/test_report.py.
    """
    results_dir, run = smoke_results
    assert f"report: {results_dir / 'report.md'}" in run.stdout
    text = (results_dir / "report.md").read_text()
    results = load(results_dir)
    assert results.counts["completed"] == len(results.trials) > 0
    assert f"{results.describe_counts()}." in text and "| pattern | dense | partial |" in text
    check_figures(results_dir / "figures", FIGURES)
    assert (results_dir / "report.html").stat().st_size > 10_000
    for trial_id in results.trials["trial_id"]:  # heatmap weights kept small: final weights only
        trial_dir = results_dir / "trials" / trial_id
        weights = torch.load(trial_dir / "model.pt", weights_only=True)
        assert set(weights) == set(load_trial_model(trial_dir).state_dict())
        assert not (trial_dir / "checkpoint.pt").exists()


def test_long_failure_lists_are_capped(tmp_path, text_only):
    import pandas as pd

    path = tmp_path / "many"
    path.mkdir()
    rows = [{"trial_id": f"t{i:02d}", "pattern": "dense", "seed": i, "status": "failed",
             "error": "ValueError: boom", "test_error": None} for i in range(40)]
    pd.DataFrame(rows).to_parquet(path / "trials.parquet")
    text = write_report(path).read_text()
    assert "40 trials: 0 completed, 0 diverged, 40 failed, 0 missing" in text
    assert text.count("ValueError: boom") == 30 and "... and 10 more" in text


def test_report_prints_table_1_next_to_matching_trials(tmp_path, text_only):
    sd = StudyDir(tmp_path / "c10")
    sd.write_plan([f"d40-s{seed}" for seed in range(3)])
    for seed, error in enumerate((0.071, 0.069, 0.072)):
        sd.record({"row": {"trial_id": f"d40-s{seed}", "study": "c10", "status": "completed", "seed": seed,
                           "preset": "densenet-40-12", "depth": 40, "pattern": "dense", "data.name": "cifar10",
                           "data.augment": False, "params": 1019722, "flops": 264812928, "test_error": error},
                   "epochs": []})
    text = write_report(sd.root).read_text()
    section = text.split("Against the paper's Table 1")[1]
    line = next(ln for ln in section.splitlines() if "densenet-40-12" in ln)
    assert "| C10 |" in line and "| 7.00 |" in line and "| 3 |" in line  # C10 (no "+"), 3 seeds


def test_report_prints_table_1_for_the_other_wirings_presets(tmp_path, text_only):
    sd = StudyDir(tmp_path / "wirings")
    presets = [("wrn-28-10", 28, 0.043), ("fractalnet-21-droppath", 21, 0.05), ("resnet-sd-1202", 1202, 0.051)]
    sd.write_plan([p for p, _, _ in presets])
    for preset, depth, error in presets:
        sd.record({"row": {"trial_id": preset, "study": "wirings", "status": "completed", "seed": 0, "preset": preset,
                           "depth": depth, "pattern": "x", "data.name": "cifar10", "data.augment": True,
                           "params": 1, "flops": 1, "test_error": error}, "epochs": []})
    section = write_report(sd.root).read_text().split("Against the paper's Table 1")[1]
    for preset, paper in (("wrn-28-10", "4.17"), ("fractalnet-21-droppath", "4.60"), ("resnet-sd-1202", "4.91")):
        line = next(ln for ln in section.splitlines() if preset in ln)
        assert "| C10+ |" in line and f"| {paper} |" in line, line


def test_report_draws_figures_3_and_5_per_family_with_test_error_per_epoch(tmp_path, draw_only):
    draw_only("error_vs_params", "training_curves")
    sd = StudyDir(tmp_path / "fig5")
    runs = [(f, p, s) for f, p, sizes in (("densenet", "dense", (1e5, 2e5)), ("preact-resnet", "residual", (2e5, 4e5)))
            for s in sizes]
    sd.write_plan([f"{family}-{int(params)}" for family, _, params in runs])
    for family, pattern, params in runs:
        row = {"trial_id": f"{family}-{int(params)}", "study": "fig5", "status": "completed", "seed": 0,
               "family": family, "pattern": pattern, "params": params, "flops": 10 * params,
               "test_error": 0.3 - params / 2e6}
        epochs = [{"epoch": e, "train_loss": 1.0 / e, "val_acc": float("nan"), "test_error": 0.5 / e}
                  for e in (1, 2, 3)]
        sd.record({"row": row, "epochs": epochs})
    text = write_report(sd.root).read_text()
    assert "test error (points) vs params per family" in text
    assert "Training loss and test error per epoch" in text
    check_figures(sd.root / "figures", ("error_vs_params", "training_curves"))


def test_usage_heatmap_trial_is_chosen_on_validation_not_test():
    import pandas as pd

    from connectome.analysis.report import select_per_pattern

    trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "pattern": ["dense"] * 3,
                           "test_error": [0.10, 0.30, 0.20], "best_val_acc": [0.70, 0.90, 0.80]})
    chosen, how = select_per_pattern(trials)
    assert chosen["trial_id"].tolist() == ["b"] and "validation error" in how
    chosen, how = select_per_pattern(trials.drop(columns="best_val_acc"))
    assert chosen["trial_id"].tolist() == ["a"] and "no validation accuracy" in how


def test_report_captions_the_validation_choice(results_dir, text_only):
    text = write_report(results_dir).read_text()
    assert "lowest best validation error" in text and "best test_error" not in text


def test_pareto_front_is_chosen_on_validation_and_reports_test(results_dir, text_only):
    import json

    import pandas as pd

    # the largest trial has the best test error of all but the worst validation accuracy:
    # a front chosen on test would hold it, one chosen on validation does not
    odd = {"params": 10**6, "test_error": 0.001, "best_val_acc": 0.0}
    result = results_dir / "trials" / "dense-g8-s1" / "result.json"
    entry = json.loads(result.read_text())
    entry["row"].update(odd)
    result.write_text(json.dumps(entry))
    table = pd.read_parquet(results_dir / "trials.parquet")
    for key, value in odd.items():
        table.loc[table["trial_id"] == "dense-g8-s1", key] = value
    table.to_parquet(results_dir / "trials.parquet", index=False)
    section = write_report(results_dir).read_text().split("## Pareto front")[1].split("\n## ")[0]
    assert "chosen on validation data" in section and "test_error" in section
    assert "dense-g8-s1" not in section


def test_report_of_a_study_where_every_trial_failed(tmp_path, text_only):
    sd = StudyDir(tmp_path / "allfail")
    sd.write_plan(["dense-a", "dense-b"])
    for trial_id in ("dense-a", "dense-b"):
        sd.record({"row": {"trial_id": trial_id, "pattern": "dense", "seed": 0, "status": "failed",
                           "error": "Traceback ...\nRuntimeError: boom"}, "epochs": []})
    text = write_report(sd.root).read_text()
    assert "2 trials: 0 completed, 0 diverged, 2 failed, 0 missing" in text
    assert "RuntimeError: boom" in text and "dense-a" in text


@pytest.mark.parametrize("pattern, sums", [("residual", True), ("dense", False)])
def test_usage_caption_explains_uniform_rows_only_for_summing_layers(tmp_path, pattern, sums):
    from connectome import build_spec, make_arch
    from connectome.analysis.report import _sums_inputs

    spec = build_spec(make_arch(pattern=pattern, block_layers=[3], growth=4, classes=3))
    (tmp_path / "spec.json").write_text(spec.to_json())
    assert _sums_inputs(TrialFiles(tmp_path)) is sums


def test_single_epoch_studies_get_no_training_curves(tmp_path, monkeypatch, text_only):
    """One epoch per trial gives one point per group: no curve and no band, so no figure, and a sentence."""
    from analysis import fake_results

    monkeypatch.setattr(fake_results, "EPOCHS", 1)
    path = fake_results.make_results_dir(tmp_path, with_models=False)
    text = write_report(path).read_text()
    assert "single epoch: no training curves" in text
    assert not (path / "figures" / "training_curves.png").exists()


def test_a_comparison_never_planned_on_shared_configurations_is_not_called_missing():
    """dense vs budget-matched random graphs, all completed: no pair by design, not 21 failed trials."""
    import pandas as pd

    from connectome.analysis.document import Document
    from connectome.analysis.report import _comparison_section

    trials = pd.DataFrame({"pattern": ["dense", "random", "random"], "seed": [0, 0, 0], "growth": [4, 9, 11],
                           "pattern_options.model": [None, "er", "ws"], "test_error": [0.17, 0.16, 0.21]})
    doc = Document()
    _comparison_section(doc, trials, "test_error", complete=True)
    text = doc.to_markdown(Path("."))
    assert "dense vs random: no pair, although every trial completed" in text
    assert "Missing pairs for dense vs random" not in text
    assert "| dense | random |" not in text  # no table row saying "3 pair(s) missing" beside it
    doc = Document()
    _comparison_section(doc, trials, "test_error", complete=False)  # something failed: list what is absent
    assert "Missing pairs for dense vs random" in doc.to_markdown(Path("."))


def test_the_report_opens_with_the_answer_computed_from_the_comparison(results_dir, text_only):
    from connectome.analysis import compare
    from connectome.analysis.answer import comparison_sentence
    from connectome.analysis.units import with_points

    write_report(results_dir)
    text = (results_dir / "report.md").read_text()
    completed = with_points(load(results_dir).completed())
    expected = comparison_sentence(compare(completed, metric="test_error_pts"), completed).text
    blocks = text.split("\n\n")
    assert blocks[:3] == ["# Study `fake`", "## Answer", f"**{expected}**"]
    assert expected.startswith("dense - partial: test error -3.00 points [-3.00, -3.00]")
    html = (results_dir / "report.html").read_text()
    body = html.split("<body>")[1]
    assert body.index("<h2>Answer</h2>") < body.index("<p class=answer>") < body.index("<h2>Summary</h2>")
    assert body.lstrip().startswith("<h1>")


def test_one_metric_family_in_the_report_text(results_dir, text_only):
    """Errors in points everywhere: no accuracy, and no fraction beside a point value."""
    text = write_report(results_dir).read_text()
    html = (results_dir / "report.html").read_text()
    for shown in (text, html):
        assert "test_acc" not in shown and "best_val_acc" not in shown and "accuracy (" not in shown
    assert "lower is better" in text.split("## Summary")[0]  # the direction, said once at the top
    assert text.count("lower is better") == 1
    summary = text.split("## Summary")[1].split("##")[0]
    values = [line.split("|")[5:9] for line in summary.splitlines() if line.startswith("| dense") or
              line.startswith("| partial")]
    assert values and all(re.fullmatch(r" \d+\.\d\d ", v) for row in values for v in row)  # fixed 2 decimals


def test_whole_network_usage_maps_are_folded_and_block_maps_inline(results_dir, text_only):
    text = write_report(results_dir).read_text()
    assert "![Source usage of dense" in text and "![Feature usage" not in text
    assert "[PNG](figures/feature_usage_dense.png)" in text
    html = (results_dir / "report.html").read_text()
    folded = re.findall(r"<details><summary>(.*?)</summary>", html)
    assert len(folded) == 2 and all(s.startswith("Feature usage of") for s in folded)


def test_proxy_correlations_over_too_few_architectures_are_one_sentence(results_dir, text_only):
    import pandas as pd

    sd = StudyDir(results_dir)
    frame = load(results_dir).trials
    frame.to_parquet(sd.trials_parquet, index=False)
    for stale in (sd.journal, sd.compacted_file):
        stale.unlink(missing_ok=True)
    table = pd.read_parquet(sd.trials_parquet)
    table["proxy.snip"] = table["params"] * 1.0
    table["canonical_hash"] = table["pattern"] + table["growth"].astype(str)  # 4 architectures
    table.to_parquet(sd.trials_parquet, index=False)
    section = write_report(results_dir).read_text().split("## Zero-cost proxies")[1].split("\n## ")[0]
    assert "4 distinct architecture(s) among the completed trials" in section and "| proxy |" not in section


def test_proxy_section_rule_on_interval_width():
    import pandas as pd

    from connectome.analysis.proxies import MAX_INTERVAL_WIDTH, informative, uninformative_text

    wide = pd.DataFrame({"proxy": ["snip", "params"], "n": [6, 6], "rho": [0.3, 0.1],
                         "ci_low": [-1.0, -0.9], "ci_high": [1.0, 0.95]})
    assert not informative(wide)
    assert uninformative_text(wide).startswith(f"Every proxy's rank correlation has a 95% interval wider than "
                                               f"{MAX_INTERVAL_WIDTH:g} (the narrowest is 1.85 wide")
    assert informative(wide.assign(ci_low=[0.2, -0.9], ci_high=[0.9, 0.95]))


def test_a_variant_s_own_options_make_a_wiring_of_its_own_in_the_answer_and_the_figures(tmp_path, text_only):
    """issue 26's study: residual with and without stochastic depth were one colour and one level."""
    sd = StudyDir(tmp_path / "variants")
    rows = [(f"{p}-{sd_p}-{seed}", p, sd_p, seed) for seed in range(3)
            for p, sd_p in (("dense", None), ("residual", None), ("residual", 0.5))]
    sd.write_plan([r[0] for r in rows])
    for trial_id, pattern, p_last, seed in rows:
        row = {"trial_id": trial_id, "study": "variants", "status": "completed", "seed": seed, "pattern": pattern,
               "depth": 40, "params": 1000, "flops": 2000, "test_error": 0.2 + 0.01 * seed + (p_last or 0) / 10}
        if p_last is not None:
            row["stochastic_depth"] = p_last
        sd.record({"row": row, "epochs": []})
    text = write_report(sd.root).read_text()
    assert "dense - residual, stochastic_depth=0.5: test error -5.00 points" in text
    assert "dense - residual: test error +0.00 points" in text
    assert "per wiring" in text


def test_a_network_whose_layers_read_joins_gets_a_sentence_not_an_empty_source_map(tmp_path, text_only):
    """A highway trial's source-usage map was all grey (its layers read gated joins): the caption claimed a map."""
    from analysis.fake_results import save_model

    sd = StudyDir(tmp_path / "hw")
    sd.write_plan(["hw-0"])
    files = sd.trial("hw-0")
    files.dir.mkdir(parents=True)
    save_model(files.dir, "highway", 4)
    sd.record({"row": {"trial_id": "hw-0", "study": "hw", "status": "completed", "seed": 0, "pattern": "highway",
                       "params": 1, "flops": 1, "test_error": 0.3, "best_val_acc": 0.7}, "epochs": []})
    text = write_report(sd.root).read_text()
    assert "No source-usage heatmap for" in text and "its layers read joins" in text
    assert "source_usage_highway" not in text and "feature_usage_highway" in text


def test_language_model_comparisons_pair_each_variant_with_prenorm():
    import pandas as pd

    from connectome.analysis.document import Document
    from connectome.analysis.report import _comparison_section

    trials = pd.DataFrame({"pattern": ["prenorm"] * 2 + ["partial"] * 4, "m": [None, None, "4", "4", "8", "8"],
                           "seed": [0, 1] * 3, "test_bpb": [2.6, 2.7, 4.3, 4.4, 3.5, 3.6]})
    doc = Document()
    _comparison_section(doc, trials, "test_bpb", complete=True)
    text = doc.to_markdown(Path("."))
    assert "| wiring | partial, m=4 | prenorm | test_bpb | 2 |" in text and "| wiring | partial, m=8 | prenorm |" in text
