"""Optuna searches over wiring options at a fixed parameter budget (issue 28): conditional parameters,
the budget's tolerance, and studies/depth_wiring_search.yaml planned without training."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from connectome.cli import main
from connectome.errors import ConfigError
from connectome.study import load_study
from connectome.study.dryrun import draw_candidates
from connectome.study.space import ParamSpec, ask_params, make_sampler

STUDY = Path(__file__).resolve().parents[2] / "studies" / "depth_wiring_search.yaml"
OPTION = "pattern_options."


def _applies(study, assignment) -> None:
    """Every sampled option belongs to the sampled pattern; every option of that pattern was sampled."""
    expected = {key for key, spec in study.space.items() if spec.applies(assignment)}
    assert set(assignment) == expected, assignment


def test_the_search_plans_candidates_at_the_budget(capsys):
    assert main(["run", str(STUDY), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    study = load_study(STUDY)
    assert plan["objectives"] == [{"metric": "best_val_bpb", "mode": "min"}] and plan["search"] == "optuna"
    assert plan["space"]["pattern_options.streams"]["when"] == {"pattern": ["hyper-connections", "mhc"]}
    budget = study.budget
    for candidate in plan["candidates"]:
        _applies(study, candidate["assignment"])
        assert candidate["arch"]["growth"] % (2 * study.arch.heads) == 0
        off = abs(candidate["params"] - budget.params) / budget.params
        assert (off > budget.tolerance) == (candidate["rejected"] is not None), candidate


def test_more_draws_cover_the_patterns_and_a_tight_tolerance_refuses_with_a_reason():
    study = load_study(STUDY, ["budget.tolerance=0.01"])
    drawn = [t for _, t in draw_candidates(study, 24)]
    assert not any(isinstance(t, str) for t in drawn)  # every draw makes a valid network
    patterns = {t.config.arch.pattern for t in drawn}
    assert len(patterns) >= 6, patterns
    refused = [t for t in drawn if t.rejected]
    assert refused and all("miss the budget 230,208" in t.rejected for t in refused)
    assert all(abs(t.params - 230_208) <= 0.01 * 230_208 for t in drawn if not t.rejected)
    assert {t.config.arch.growth for t in drawn} <= {56, 60, 64, 68}


def test_tpe_samples_each_pattern_s_own_options_only():
    study = load_study(STUDY)
    ot = optuna.create_study(sampler=make_sampler(study))
    for i in range(14):  # past TPE's 10 random start-up trials
        trial = ask_params(ot, study.space)
        _applies(study, trial.params)
        ot.tell(trial, 2.0 + 0.01 * i)


def test_a_fixed_space_is_asked_as_before():
    space = {"pattern": ParamSpec(choices=["dense", "plain"]), "growth": ParamSpec(low=4, high=16, step=4)}
    trial = ask_params(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)), space)
    assert set(trial.distributions) == {"pattern", "growth"}
    assert "when" not in space["growth"].model_dump()  # left out of dumps: stored study definitions still match


@pytest.mark.parametrize("when, problem", [
    ({"pattern_options.m": [2]}, "'pattern_options.m' is not a categorical parameter listed before"),
    ({"pattern": ["dense"]}, r"\['dense'\] not among its choices"),
    ({"pattern": []}, r"\[\] not among its choices"),
])
def test_a_bad_condition_names_the_parameter(tmp_path, capsys, when, problem):
    data = yaml.safe_load(STUDY.read_text())
    data["output"] = str(tmp_path)
    data["search"]["space"]["pattern_options.period"]["when"] = when
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match=problem):
        load_study(path)
    assert main(["run", str(path), "--dry-run"]) == 2
    assert "pattern_options.period: when:" in capsys.readouterr().err
