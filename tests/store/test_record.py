"""The record: flat config columns, resource keys out of the id, factors, column order."""
from __future__ import annotations

import pandas as pd

from connectome.store.record import config_columns, config_hash, factor_columns, is_factor, order_columns
from connectome.study import expand_grid, load_study, trial_id

from study.conftest import smoke_dict, write_study


def _config(tmp_path, **arch):
    data = smoke_dict(tmp_path)
    data["arch"].update(arch)
    data["search"] = {"kind": "grid", "seeds": 1}
    return expand_grid(load_study(write_study(tmp_path, data)))[0].config


def test_flat_config_matches_the_design_conventions(tmp_path):
    row = config_columns(_config(tmp_path, pattern="partial", m=[8, 12, 16]))
    assert row["pattern"] == "partial" and row["m"] == "8,12,16" and row["train.epochs"] == 2
    assert row["data.name"] == "synthetic" and row["data.synthetic.size"] == 8
    assert row["train.milestones"] == "0.5,0.75"
    assert not any(isinstance(v, (dict, list)) for v in row.values())


def test_resource_keys_do_not_change_the_trial_id(tmp_path):
    config = _config(tmp_path)
    moved = config.model_copy(update={
        "train": config.train.model_copy(update={"threads": 7, "device": "cpu", "compile": True,
                                                 "eval_batch_size": 3}),
        "data": config.data.model_copy(update={"root": "/elsewhere", "download": False}),
    })
    assert trial_id(moved) == trial_id(config)
    assert config_hash(moved.model_dump(mode="json")) == config_hash(config.model_dump(mode="json"))
    fp32, bf16 = (config.model_copy(update={"train": config.train.model_copy(update={"precision": p})})
                  for p in ("fp32", "bf16"))
    assert trial_id(fp32) != trial_id(bf16)  # numerics are part of the id


def test_pattern_options_are_factors_and_resources_are_not():
    assert is_factor("pattern_options.model") and is_factor("growth") and is_factor("train.lr")
    assert not is_factor("train.threads") and not is_factor("data.root") and not is_factor("test_acc")
    assert not is_factor("topo.density")
    df = pd.DataFrame({"pattern": ["random"] * 2, "pattern_options.model": ["er", "ws"], "test_acc": [0.1, 0.2]})
    assert factor_columns(df) == ["pattern_options.model"]


def test_columns_are_ordered_config_metrics_provenance_other():
    cols = ["hostname", "test_acc", "train.lr", "pattern", "status", "trial_id", "topo.edges", "params",
            "train.threads", "pattern_options.model", "seed"]
    assert order_columns(cols) == ["trial_id", "pattern", "pattern_options.model", "train.lr", "seed", "status",
                                   "params", "test_acc", "hostname", "train.threads", "topo.edges"]
