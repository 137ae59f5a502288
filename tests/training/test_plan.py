"""The planned trial: one derivation of what a trial builds, read by the trainer and by planning alike."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from connectome.errors import ConfigError
from connectome.store.record import flatten
from connectome.study import expand_grid, load_study
from connectome.study.dedup import Deduplicator
from connectome.study.dryrun import plan_json
from connectome.training import catalog, plan as planning
from connectome.training.config import make_trial_config
from connectome.training.plan import plan_trial
from connectome.training.trainer import setup_trial, train_trial

from study.conftest import smoke_dict, write_study
from training.test_datasets import _fake_idx_dataset, no_roots  # noqa: F401 - the fixture

# Grayscale synthetic data: in_channels 1 and 5 classes differ from the arch's defaults (3, 10).
GRAY = {"name": "synthetic", "synthetic": {"train": 96, "test": 32, "size": 8, "channels": 1, "classes": 5}}


def _gray_study(tmp_path):
    data = smoke_dict(tmp_path)
    data["data"] = GRAY
    del data["arch"]["classes"]  # left to the data (an explicit one the data contradicts is refused)
    data["train"] = {**data.get("train", {}), "epochs": 1, "threads": 1, "batch_size": 32}
    data["search"] = {"kind": "grid", "variants": [{"pattern": "dense"}, {"pattern": "partial"}], "seeds": 1}
    return load_study(write_study(tmp_path, data))


def test_every_field_of_the_dry_run_plan_is_what_the_trainer_builds(tmp_path):
    study = _gray_study(tmp_path)
    planned = plan_json(study)["trials"][0]
    config = expand_grid(study)[0].config
    record = train_trial(config, trial_dir=tmp_path / "trials" / planned["trial_id"])
    assert record["status"] == "completed", record["error"]
    assert planned["arch"]["in_channels"] == 1 and planned["arch"]["classes"] == 5  # the data's, not the defaults
    assert planned["arch"]["dropout"] == 0.2  # synthetic data is not augmented (paper, Sec. 4.2)
    for key in ("trial_id", "params", "flops", "activations", "graph_hash", "canonical_hash"):
        assert planned[key] == record[key], key
    for key, value in flatten(planned["arch"]).items():
        assert record[key] == value, key
    for key, value in planned["execution"].items():
        assert record[f"train.{key}"] == value, key
    trial = setup_trial(config)
    assert list(trial.data.input_size) == planned["input_size"]
    assert trial.spec.to_json() == plan_trial(config).spec.to_json()
    assert planned["train_hash"] == plan_trial(config).train_hash
    saved = (tmp_path / "trials" / planned["trial_id"] / "config.json").read_text()
    assert '"planned"' in saved and planned["graph_hash"] in saved  # written once, beside the config


def test_a_changed_resolution_rule_reaches_every_consumer(tmp_path, monkeypatch):
    monkeypatch.setattr(planning, "NO_AUGMENT_DROPOUT", 0.35)
    study = _gray_study(tmp_path)
    trial = expand_grid(study)[0]
    assert trial.plan.arch.dropout == 0.35  # study expansion, constraints, dedup and replay read trial.plan
    assert plan_json(study)["trials"][0]["arch"]["dropout"] == 0.35  # --dry-run
    built = setup_trial(trial.config)  # the trainer
    assert built.arch.dropout == 0.35 and built.spec == trial.plan.spec
    assert {m.p for m in built.model.modules() if hasattr(m, "p")} == {0.35}
    dedup = Deduplicator()
    dedup.duplicate_of("a", trial.plan)
    monkeypatch.setattr(planning, "NO_AUGMENT_DROPOUT", 0.2)
    assert dedup.duplicate_of("b", plan_trial(trial.config)) is None  # another network, not a duplicate


def test_the_trainer_refuses_data_that_disagrees_with_the_plan(no_roots, monkeypatch):  # noqa: F811
    _fake_idx_dataset(no_roots / "env" / "mnist")  # 28x28 images on disk
    monkeypatch.setitem(catalog.DATASETS, "mnist", dataclasses.replace(catalog.DATASETS["mnist"], shape=(1, 32, 32)))
    config = make_trial_config({"data": {"name": "mnist", "val_size": 10, "download": False},
                                "arch": {"block_layers": [1], "growth": 2}, "train": {"threads": 1}})
    with pytest.raises(ConfigError, match=r"loaded as \(C, H, W\) \(1, 28, 28\).*planned for \(1, 32, 32\)"):
        setup_trial(config)


def test_a_plan_with_explicit_execution_choices_imports_no_torch():
    code = ("import sys, json; from connectome.training.plan import plan_trial; "
            "from connectome.training.config import make_trial_config; "
            f"c = make_trial_config({{'data': {GRAY!r}, 'train': {{'precision': 'fp32', 'channels_last': False, "
            "'compile': False}}); p = plan_trial(c); "
            "print(json.dumps([p.config is c, p.input_size, p.arch.classes, 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [True, [1, 8, 8], 5, False]  # nothing to resolve: no device looked at


def test_a_validation_set_larger_than_the_data_is_refused_when_planning(tmp_path):
    # issue 30: it failed only inside the workers
    from connectome.errors import DatasetError

    with pytest.raises(DatasetError, match=r"data.val_size 70,000 leaves no training images: dataset 'fashion-mnist' "
                                           r"has 60,000"):
        plan_trial(make_trial_config({"data": {"name": "fashion-mnist", "val_size": 70_000}}))
    data = smoke_dict(tmp_path)
    data["data"]["val_size"] = 10_000
    with pytest.raises(ConfigError, match="leaves no training images"):
        expand_grid(load_study(write_study(tmp_path, data)))


def test_an_input_too_small_for_the_network_is_refused_when_planning():
    # issue 26: `connectome graph --input-size 2` was accepted; train and run plan through the same check
    from connectome.errors import SpecError

    four_blocks = {"block_layers": [1, 1, 1, 1]}  # maps of 4, 2, 1 and 0 pixels at the smallest synthetic size
    with pytest.raises(SpecError, match="too small for this network: block 4 would run on 0x0 maps"):
        plan_trial(make_trial_config({"data": GRAY | {"synthetic": GRAY["synthetic"] | {"size": 4}},
                                      "arch": four_blocks}))
    assert plan_trial(make_trial_config({"data": GRAY, "arch": four_blocks})).input_size == (1, 8, 8)


@pytest.mark.parametrize("arch, m", [
    ({"family": "decoder", "pattern": "partial", "pattern_options": {"m": 3}}, "[3]"),  # an Optuna search's option
    ({"family": "decoder", "pattern": "partial", "m": 4}, "[4]"),
    ({"family": "decoder", "pattern": "partial"}, "[2]"),  # the decoder pattern's own default, not the width
    ({"family": "decoder", "pattern": "prenorm"}, None),
])
def test_the_record_s_m_is_the_window_the_decoder_built(arch, m):
    # depth_wiring_search's partial with pattern_options.m: 3 was recorded as m = [64] (the width)
    config = make_trial_config({"arch": {"growth": 16, "heads": 2, "sublayers": 4, "context": 8, **arch},
                                "data": {"name": "text"}, "train": {"steps": 2}})
    assert plan_trial(config).record_columns()["m"] == m


def test_a_decoder_records_its_own_keys_at_their_defaults_too():
    # a study over sublayers 8, 16, 32 read 8 (the default, left out of the config dump) as missing
    config = make_trial_config({"arch": {"family": "decoder", "pattern": "prenorm", "growth": 16, "heads": 2,
                                         "context": 8},
                                "data": {"name": "text"}, "train": {"steps": 2}})
    columns = plan_trial(config).record_columns()
    assert (columns["sublayers"], columns["heads"], columns["context"], columns["tie_embeddings"]) == (8, 2, 8, True)
    assert "sublayers" not in plan_trial(make_trial_config({"data": {"name": "synthetic"}})).record_columns()
