"""TrialConfig validation: nested dicts, presets, unknown keys, recipe defaults."""
import pytest

from connectome.errors import ConfigError
from connectome.training.config import TrainConfig, TrialConfig, make_trial_config


def test_defaults_are_the_papers_recipe():
    t = TrainConfig()
    assert (t.lr, t.momentum, t.nesterov, t.weight_decay, t.batch_size) == (0.1, 0.9, True, 1e-4, 64)
    assert (t.schedule, t.milestones, t.gamma, t.precision) == ("step", (0.5, 0.75), 0.1, "auto")


def test_nested_mapping_validates_and_freezes(tiny):
    cfg = TrialConfig.model_validate(tiny(seed=3))
    assert cfg.seed == 3 and cfg.arch.block_layers == [2, 2] and cfg.data.synthetic.size == 8
    with pytest.raises(Exception):
        cfg.seed = 4  # frozen


def test_arch_preset_supplies_defaults_under_explicit_keys():
    cfg = make_trial_config({"arch": {"preset": "densenet-bc-100-12", "growth": 8}})
    assert (cfg.arch.depth, cfg.arch.bottleneck, cfg.arch.compression, cfg.arch.growth) == (100, True, 0.5, 8)


@pytest.mark.parametrize("bad,fragment", [
    ({"train": {"epoch": 3}}, "train.epoch: unknown key"),
    ({"data": {"val_size": -1}}, "data.val_size"),
    ({"train": {"schedule": "linear"}}, "train.schedule"),
    ({"train": {"milestones": [0.75, 0.5]}}, "increasing fractions"),
    ({"train": {"lr": float("inf")}}, "train.lr"),
    ({"arch": {"preset": "densenet-7"}}, "unknown preset 'densenet-7'"),
])
def test_invalid_keys_name_the_key(bad, fragment):
    with pytest.raises(ConfigError, match="invalid trial config") as err:
        make_trial_config(bad)
    assert fragment in str(err.value)


def test_round_trip_through_json(tiny):
    cfg = make_trial_config(tiny())
    assert TrialConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_proxies_default_keeps_earlier_dumps_and_ids():
    from connectome.training.config import TrainConfig

    assert "proxies" not in TrainConfig().model_dump()  # trial ids of earlier studies unchanged
    off = TrainConfig(proxies=False)
    assert TrainConfig.model_validate(off.model_dump()).proxies is False
