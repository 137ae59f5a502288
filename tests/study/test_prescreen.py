"""Pre-screening a grid by a proxy: validated rule, ranking, skipped trials, equality with the recorded proxy."""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
from rich.console import Console

from connectome.errors import ConfigError
from connectome.study import expand_grid, load_study
from connectome.study.prescreen import keep_count, proxy_at_init, rank_configurations, screen, simulate

from study.conftest import smoke_dict, write_study


def _study(tmp_path, prescreen, growths=(2, 4, 6), seeds=2, **search):
    data = smoke_dict(tmp_path)
    data["search"] = {"kind": "grid", "factors": {"growth": list(growths)}, "seeds": seeds, **search}
    if prescreen is not None:
        data["search"]["prescreen"] = prescreen
    return load_study(write_study(tmp_path, data))


@pytest.mark.parametrize("rule, message", [
    ({"proxy": "zen", "keep": 0.5}, "unknown proxy 'zen'; use one of grad_norm, snip, synflow, naswot, params"),
    ({"proxy": "snip", "keep": 0}, "search.grid.prescreen.keep: Input should be greater than 0"),
    ({"proxy": "snip", "keep": 1.5}, "less than or equal to 1"),
    ({"proxy": "snip"}, "search.grid.prescreen.keep: required key is missing"),
])
def test_the_rule_is_validated_at_the_edge(tmp_path, rule, message):
    with pytest.raises(ConfigError, match="study.yaml: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        _study(tmp_path, rule)


def test_keep_count_rounds_up_and_keeps_at_least_one():
    assert [keep_count(n, 0.5) for n in (1, 2, 3, 8)] == [1, 1, 2, 4]
    assert keep_count(10, 0.01) == 1 and keep_count(10, 1.0) == 10 and keep_count(10, 0.3) == 3


def test_ranking_puts_undefined_scores_last_and_breaks_ties_in_plan_order():
    scores = pd.Series([1.0, math.nan, 3.0, 1.0, -math.inf], index=list("abcde"))
    table = rank_configurations(scores, keep=0.6)
    assert table["rank"].to_dict() == {"c": 1, "a": 2, "d": 3, "b": 4, "e": 5}
    assert table["kept"].to_dict() == {"a": True, "b": False, "c": True, "d": True, "e": False}


def test_screen_keeps_whole_configurations_by_their_mean_over_seeds(tmp_path):
    trials = expand_grid(_study(tmp_path, None, growths=(2, 4, 6, 8)))
    # seed 1 of growth 2 scores high, but its configuration's mean is the lowest
    fake = {(2, 0): 0.0, (2, 1): 9.0, (4, 0): 5.0, (4, 1): 5.0, (6, 0): 6.0, (6, 1): 6.0, (8, 0): 1.0, (8, 1): 1.0}
    marked, table = screen(trials, "snip", 0.5, score=lambda t, p: fake[t.config.arch.growth, t.config.seed])
    kept = {(t.config.arch.growth, t.config.seed) for t in marked if not t.rejected}
    assert kept == {(4, 0), (4, 1), (6, 0), (6, 1)}
    skipped = [t for t in marked if t.rejected]
    assert len(skipped) == 4 and all(t.rejected.startswith("skipped by prescreen: snip") for t in skipped)
    assert "ranks 4 of 4 configurations, top 2 kept" in next(t.rejected for t in skipped if t.config.arch.growth == 8)
    assert set(table.columns) >= {"trial_id", "configuration", "seed", "params", "proxy", "value", "score", "rank", "status"}
    assert table.set_index("trial_id").loc[trials[0].trial_id, "score"] == pytest.approx(4.5)
    assert (table["status"] == "skipped").sum() == 4 and len(table) == len(trials)


def test_rejected_candidates_are_not_scored(tmp_path):
    study = _study(tmp_path, None)
    trials = expand_grid(load_study(study.source, ["constraints.max_params=10000"]))
    assert any(t.rejected for t in trials)
    marked, table = screen(trials, "params", 1.0)
    assert set(table["trial_id"]) == {t.trial_id for t in trials if not t.rejected}
    assert [t.rejected for t in marked] == [t.rejected for t in trials]  # keep 1.0: nothing more skipped


def test_params_proxy_keeps_the_largest(tmp_path):
    marked, _ = screen(expand_grid(_study(tmp_path, None)), "params", 0.33)
    assert {t.config.arch.growth for t in marked if not t.rejected} == {6}


def test_proxy_at_init_is_the_proxy_the_trainer_records(tmp_path):
    from connectome.training import train_trial

    trial = expand_grid(_study(tmp_path, None, growths=(4,), seeds=1, **{}))[0]
    config = trial.config.model_copy(update={"train": trial.config.train.model_copy(update={"epochs": 1, "device": "cpu"})})
    record = train_trial(config)
    trial = dataclasses.replace(trial, plan=dataclasses.replace(trial.plan, config=config))
    for proxy in ("synflow", "snip"):
        assert proxy_at_init(trial, proxy) == pytest.approx(record[f"proxy.{proxy}"], rel=1e-4)


def test_driver_skips_the_screened_trials_and_writes_the_table(tmp_path):
    from connectome.orchestration.driver import plan_grid, write_prescreen
    from connectome.store.layout import StudyDir

    study = _study(tmp_path, {"proxy": "params", "keep": 0.5})
    trials, table, _ = plan_grid(study, Console(file=open(tmp_path / "log.txt", "w")))
    assert {t.config.arch.growth for t in trials} == {4, 6} and len(trials) == 4
    sd = StudyDir(tmp_path / "out")
    write_prescreen(sd, table)
    written = pd.read_csv(sd.root / "prescreen.csv")
    assert sorted(written["status"]) == ["kept"] * 4 + ["skipped"] * 2
    assert "prescreen: 2 of 3 configurations kept" in (tmp_path / "log.txt").read_text()


def test_dry_run_says_what_the_screen_will_do(tmp_path, capsys):
    from connectome.cli import main

    study = _study(tmp_path, {"proxy": "synflow", "keep": 0.5})
    assert main(["run", study.source, "--dry-run"]) == 0
    assert "prescreen: only the top 0.5 of these 3 configurations by synflow" in capsys.readouterr().out


def _records() -> pd.DataFrame:
    """Six configurations, one seed each; the proxy ranks them exactly in reverse of validation accuracy."""
    return pd.DataFrame({"trial_id": [f"t{i}" for i in range(6)], "growth": range(6), "seed": 0,
                         "best_val_acc": [0.1 * i for i in range(6)], "test_acc": [0.1 * i + 0.01 for i in range(6)],
                         "train_time_s": [1.0, 1.0, 1.0, 1.0, 2.0, 2.0], "proxy.snip": [6.0 - i for i in range(6)],
                         "params": [100 * i for i in range(6)]})


def test_simulate_reports_cost_and_loss_from_records():
    worst = simulate(_records(), "snip", 0.5)  # keeps growth 0, 1, 2: the three worst
    assert worst == {"configurations": 6, "kept": 3, "cost_fraction": pytest.approx(3 / 8), "rank_of_best_kept": 4,
                     "best_report_all": pytest.approx(0.51), "best_report_kept": pytest.approx(0.21)}
    best = simulate(_records(), "params", 0.5)  # keeps growth 3, 4, 5
    assert best["rank_of_best_kept"] == 1 and best["cost_fraction"] == pytest.approx(5 / 8)
    assert best["best_report_kept"] == best["best_report_all"]


def test_report_says_what_the_screen_skipped(tmp_path, text_only):
    from analysis.fake_results import make_results_dir
    from connectome.analysis import write_report
    from connectome.orchestration.driver import plan_grid, write_prescreen
    from connectome.store.layout import StudyDir

    results = make_results_dir(tmp_path)
    assert "Pre-screen" not in write_report(results, metric="test_acc").read_text()
    _, table, _ = plan_grid(_study(tmp_path, {"proxy": "params", "keep": 0.5}), Console(file=open(tmp_path / "log", "w")))
    write_prescreen(StudyDir(results), table)
    text = write_report(results, metric="test_acc").read_text()
    assert "## Pre-screen" in text and "2 of 3 configurations were trained" in text and "not failures" in text
