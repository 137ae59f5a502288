"""Grid expansion, seeds, deterministic ids, constraints and budget matching (no training)."""
from __future__ import annotations

import pytest

from connectome.builder import build_spec
from connectome.complexity import complexity
from connectome.errors import ConfigError
from connectome.study import expand_grid, load_study
from connectome.study.trials import grid_assignments, make_trial
from connectome.training.catalog import data_shape
from connectome.training.plan import plan_trial

from study.conftest import smoke_dict, write_study


def _study(tmp_path, **search):
    data = smoke_dict(tmp_path)
    data["search"] = {"kind": "grid", **search}
    return load_study(write_study(tmp_path, data))


def test_grid_is_the_full_factorial_times_seeds(tmp_path):
    study = _study(tmp_path, variants=[{"pattern": "dense"}, {"pattern": "partial"}],
                   factors={"growth": [4, 6, 8], "train.lr": [0.05, 0.1]}, seeds=3)
    trials = expand_grid(study)
    assert len(trials) == 2 * 3 * 2 * 3
    combos = {(t.config.arch.pattern, t.config.arch.growth, t.config.train.lr, t.config.seed) for t in trials}
    assert len(combos) == len(trials)
    assert {t.config.seed for t in trials} == {0, 1, 2}
    assert len({t.trial_id for t in trials}) == len(trials)
    # train.* factors land in the train section, arch keys in the arch
    assert {t.config.train.lr for t in trials} == {0.05, 0.1}


def test_explicit_seed_list_and_variants_only(tmp_path):
    study = _study(tmp_path, variants=[{"pattern": "dense"}, {"pattern": "partial", "m": 8}], seeds=[7, 11])
    trials = expand_grid(study)
    assert [(t.assignment, t.config.seed) for t in trials] == [
        ({"pattern": "dense"}, 7), ({"pattern": "dense"}, 11),
        ({"pattern": "partial", "m": 8}, 7), ({"pattern": "partial", "m": 8}, 11),
    ]
    assert trials[2].config.arch.m == 8


def test_trial_ids_are_deterministic_and_follow_the_config(tmp_path):
    study = _study(tmp_path, factors={"growth": [4, 8]}, seeds=2)
    first = [t.trial_id for t in expand_grid(study)]
    assert first == [t.trial_id for t in expand_grid(study)]
    longer = load_study(study.source, ["train.epochs=3"])
    assert not set(first) & {t.trial_id for t in expand_grid(longer)}
    assert all(i.startswith("dense-") for i in first)


def test_duplicate_combinations_are_merged(tmp_path):
    study = _study(tmp_path, variants=[{"growth": 4}, {"growth": 4}], seeds=1)
    assert len(grid_assignments(study.search)) == 2
    assert len(expand_grid(study)) == 1


def test_measure_matches_the_spec_with_the_datasets_shape(tmp_path):
    trial = expand_grid(_study(tmp_path))[0]
    size, classes = data_shape(trial.config.data)
    arch = trial.config.arch.model_copy(update={"in_channels": size[0], "classes": classes})
    cx = complexity(build_spec(arch), size)
    planned = plan_trial(trial.config)
    assert (trial.params, trial.flops) == (cx.params, cx.flops) == (planned.params, planned.flops)


def test_constraints_reject_before_training(tmp_path):
    data = smoke_dict(tmp_path)
    data["search"] = {"kind": "grid", "factors": {"growth": [2, 4, 12]}}
    small = expand_grid(load_study(write_study(tmp_path, data)))
    limit = sorted(t.params for t in small)[1]
    data["constraints"] = {"max_params": limit}
    trials = expand_grid(load_study(write_study(tmp_path, data)))
    rejected = [t for t in trials if t.rejected]
    assert [t.config.arch.growth for t in rejected] == [12]
    assert "max_params" in rejected[0].rejected
    data["constraints"] = {"max_flops": 1}
    assert all("max_flops" in t.rejected for t in expand_grid(load_study(write_study(tmp_path, data))))


def test_budget_matches_each_pattern_to_the_target(tmp_path):
    data = smoke_dict(tmp_path)
    data["budget"] = {"params": 20000}
    data["search"]["variants"] = [{"pattern": "dense"}, {"pattern": "residual"}]
    trials = expand_grid(load_study(write_study(tmp_path, data)))
    growths = {t.config.arch.pattern: t.config.arch.growth for t in trials}
    assert growths["dense"] != growths["residual"]
    for t in trials:
        assert abs(t.params - 20000) / 20000 < 0.2, (t.config.arch.pattern, t.params)


def test_make_trial_for_an_optuna_assignment(tmp_path):
    study = _study(tmp_path)
    trial = make_trial(study, {"pattern": "residual", "growth": 6, "train.lr": 0.05}, seed=3)
    assert trial.config.arch.pattern == "residual" and trial.config.train.lr == 0.05
    assert trial.config.seed == 3 and trial.trial_id.startswith("residual-") and trial.params > 0


@pytest.mark.parametrize("bad", [{"pattern": "ring"}, {"depth": 11}])
def test_invalid_candidates_raise_user_errors(tmp_path, bad):
    from connectome.errors import ConnectomeError

    with pytest.raises(ConnectomeError):
        make_trial(_study(tmp_path), bad, seed=0)


def test_a_preset_variant_gives_the_presets_network(tmp_path):
    data = smoke_dict(tmp_path, arch={}, search={"kind": "grid", "variants": [
        {"preset": "preact-resnet-164"}, {"preset": "densenet-40-12", "growth": 6}]})
    trials = expand_grid(load_study(write_study(tmp_path, data)))
    resnet, dense = (t.config.arch for t in trials)
    assert (resnet.family, resnet.depth, resnet.pattern, resnet.preset) == ("preact-resnet", 164, "residual",
                                                                            "preact-resnet-164")
    assert (dense.depth, dense.growth) == (40, 6)  # the variant's own keys override the preset


def test_precision_auto_is_resolved_before_the_trial_id(tmp_path, monkeypatch):
    from connectome.training import resolve

    monkeypatch.setattr(resolve, "native_bf16", lambda device: True)
    study = _study(tmp_path)
    auto = expand_grid(study)
    assert {t.config.train.precision for t in auto} == {"bf16"}
    assert [t.trial_id for t in auto] == [t.trial_id for t in expand_grid(load_study(study.source, ["train.precision=bf16"]))]
    assert not {t.trial_id for t in auto} & {t.trial_id for t in expand_grid(load_study(study.source, ["train.precision=fp32"]))}


@pytest.mark.parametrize("gpu,kind", [(0, "cpu"), (1, "cuda")])
def test_trials_are_planned_for_the_device_their_resources_give(tmp_path, monkeypatch, gpu, kind):
    # Not for the device the planning process sees: with resources.gpu 0 a trial trains on CPU on a GPU machine.
    import torch

    from connectome.training import resolve

    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(resolve, "native_bf16", lambda device: asked.append(device) or kind == "cuda")
    study = load_study(_study(tmp_path).source, [f"resources.gpu={gpu}"])
    trials = expand_grid(study)
    assert set(asked) == {kind}
    assert {t.config.train.precision for t in trials} == {"bf16" if kind == "cuda" else "fp32"}
    if kind == "cuda":  # channels-last was measured faster on x86-64 CPUs only
        assert {t.config.train.channels_last for t in trials} == {False}


def test_channels_last_auto_is_resolved_before_the_trial_id(tmp_path, monkeypatch):
    from connectome.training import resolve

    monkeypatch.setattr(resolve.platform, "machine", lambda: "x86_64")
    study = load_study(_study(tmp_path).source, ["train.precision=fp32"])  # fp32: channels-last on x86-64
    auto = expand_grid(study)
    assert {t.config.train.channels_last for t in auto} == {True}
    pinned = expand_grid(load_study(study.source, ["train.precision=fp32", "train.channels_last=true"]))
    assert [t.trial_id for t in auto] == [t.trial_id for t in pinned]
    nchw = expand_grid(load_study(study.source, ["train.precision=fp32", "train.channels_last=false"]))
    assert not {t.trial_id for t in auto} & {t.trial_id for t in nchw}


def test_one_pattern_option_is_a_factor_and_joins_the_base_options(tmp_path):
    data = smoke_dict(tmp_path, arch={"pattern": "random", "pattern_options": {"model": "ws", "k": 2}, "depth": 22})
    data["search"] = {"kind": "grid", "factors": {"pattern_options.p": [0.1, 0.5]}}
    trials = expand_grid(load_study(write_study(tmp_path, data)))
    assert [t.config.arch.pattern_options for t in trials] == [{"model": "ws", "k": 2, "p": 0.1},
                                                               {"model": "ws", "k": 2, "p": 0.5}]
    assert trials[0].assignment == {"pattern_options.p": 0.1}


def test_span_curve_over_max_span(tmp_path):
    data = smoke_dict(tmp_path, arch={"pattern": "span", "depth": 22, "growth": 4})
    data["search"] = {"kind": "grid", "factors": {"pattern_options.max_span": [1, 2, 4, 6, 8]}}
    trials = expand_grid(load_study(write_study(tmp_path, data)))
    assert [t.config.arch.pattern_options["max_span"] for t in trials] == [1, 2, 4, 6, 8]
    assert [t.params for t in trials[:4]] == sorted({t.params for t in trials})  # fewer edges, fewer params
    # 6 layers per block: span 6 is already the dense block, so span 8 is the same graph and runs once
    assert trials[4].duplicate_of == trials[3].trial_id and trials[3].duplicate_of is None


def test_a_bad_pattern_option_names_the_combination(tmp_path):
    data = smoke_dict(tmp_path, arch={"pattern": "span", "depth": 22})
    data["search"] = {"kind": "grid", "factors": {"pattern_options.max_span": [0]}}
    with pytest.raises(ConfigError, match=r"combination \{'pattern_options.max_span': 0\}.*max_span must be"):
        expand_grid(load_study(write_study(tmp_path, data)))
    data["search"] = {"kind": "grid", "factors": {"pattern_options.no such": [1]}}
    with pytest.raises(ConfigError, match="unknown trial key 'pattern_options.no such'"):
        load_study(write_study(tmp_path, data))
