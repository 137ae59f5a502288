"""Study files: validation at the edge, one clear line per problem (file, key path, what is allowed)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from connectome.cli import main
from connectome.errors import ConfigError
from connectome.study import load_study
from connectome.study.schema import GridSearch, OptunaSearchConfig

from study.conftest import REPO, smoke_dict, write_study


def _set(path: str, value):
    """A mutator that sets a dotted key of the smoke study dict."""
    def mutate(d: dict) -> dict:
        *heads, last = path.split(".")
        node = d
        for h in heads:
            node = node.setdefault(h, {})
        node[last] = value
        return d
    return mutate


def _drop(key: str):
    return lambda d: {k: v for k, v in d.items() if k != key}


OPTUNA = {"kind": "optuna", "space": "connectivity", "n_trials": 2,
          "objectives": [{"metric": "best_val_acc", "mode": "max"}]}

# (id, change to the smoke study, substrings the one-line error must contain)
MALFORMED = [
    ("unknown-top-key", _set("epochs", 3), ["unknown key 'epochs'", "allowed: name, description"]),
    ("missing-name", _drop("name"), ["name: required key is missing"]),
    ("missing-search", _drop("search"), ["search: required key is missing"]),
    ("bad-name", _set("name", "a/b"), ["name: String should match pattern"]),
    ("unknown-search-kind", _set("search", {"kind": "bayes"}), ["'bayes'", "'grid', 'optuna'"]),
    ("unknown-arch-key", _set("arch.growht", 4), ["arch.growht: unknown key 'growht'", "growth"]),
    ("unknown-train-key", _set("train.epoch", 4), ["train.epoch: unknown key", "epochs"]),
    ("wrong-type", _set("train.epochs", "many"), ["train.epochs", "valid integer"]),
    ("out-of-range", _set("train.epochs", 0), ["train.epochs", "greater than or equal to 1"]),
    ("unknown-factor", _set("search.factors", {"widht": [4, 8]}), ["search.factors.widht", "unknown trial key 'widht'", "train.<key>"]),
    ("empty-factor", _set("search.factors", {"growth": []}), ["factor 'growth' has no values"]),
    ("unknown-pattern", _set("search.variants", [{"pattern": "ring"}]), ["unknown pattern 'ring'", "dense"]),
    ("depth-does-not-fit", _set("arch.depth", 11), ["depth 11 does not fit"]),
    ("duplicate-seeds", _set("search.seeds", [0, 0]), ["search.grid.seeds", "distinct"]),
    ("grid-key-in-wrong-kind", _set("search.n_trials", 3), ["search.grid.n_trials: unknown key", "factors, variants, seeds"]),
    ("unknown-dataset", _set("data.name", "imagenet64"), ["unknown dataset 'imagenet64'", "fashion-mnist"]),
    ("unknown-sampler", _set("search", {**OPTUNA, "sampler": "cmaes"}), ["search.optuna.sampler", "'tpe', 'nsga2' or 'random'"]),
    ("unknown-objective", _set("search", {**OPTUNA, "objectives": [{"metric": "accuracy", "mode": "max"}]}),
     ["objectives.0.metric", "'best_val_acc'"]),
    ("missing-space-file", _set("search", {**OPTUNA, "space": "nope"}), ["search space 'nope' not found", "connectivity"]),
    ("bad-space-param", _set("search", {**OPTUNA, "space": {"growth": {"choices": [4], "low": 2, "high": 8}}}),
     ["growth", "either `choices"]),
    ("negative-budget", _set("budget", {"params": -5}), ["budget.params", "greater than 0"]),
    ("log-and-step", _set("search", {**OPTUNA, "space": {"train.lr": {"low": 0.01, "high": 0.1, "log": True, "step": 0.01}}}),
     ["search.optuna.space.train.lr: `log` and `step` cannot be combined"]),
    ("zero-step", _set("search", {**OPTUNA, "space": {"growth": {"low": 2, "high": 8, "step": 0}}}),
     ["space.growth: step must be > 0"]),
    ("float-step-int-range", _set("search", {**OPTUNA, "space": {"growth": {"low": 2, "high": 8, "step": 2.5}}}),
     ["space.growth: an integer range (2 .. 8) needs an integer step"]),
]


@pytest.mark.parametrize("change, expected", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_study_is_one_clear_line(tmp_path, capsys, change, expected):
    path = write_study(tmp_path, change(smoke_dict(tmp_path)))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("connectome run: error: ") and str(path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for text in expected:
        assert text in err


@pytest.mark.parametrize("text, expected", [
    ("name: x\nsearch: [1, 2\n", ["not valid YAML at line 3", "expected ',' or ']'"]),
    ("- name: x\n", ["is a list", "YAML mapping"]),
    ("", ["the file is empty"]),
    ("name: x\n\tdata: 1\n", ["not valid YAML at line 2"]),
])
def test_unparsable_yaml_is_one_clear_line(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for part in expected:
        assert part in err


def test_missing_file_and_bad_override(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml"), "--dry-run"]) == 2
    assert "cannot read study file" in capsys.readouterr().err
    path = write_study(tmp_path, smoke_dict(tmp_path))
    assert main(["run", str(path), "--dry-run", "--set", "train.epochs"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["run", str(path), "--dry-run", "--set", "train.epochs=zero"]) == 2
    assert "train.epochs" in capsys.readouterr().err


def test_error_from_the_real_executable_has_no_traceback(tmp_path):
    path = write_study(tmp_path, _set("arch.growht", 4)(smoke_dict(tmp_path)))
    proc = subprocess.run([sys.executable, "-m", "connectome", "run", str(path), "--dry-run"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "arch.growht: unknown key" in proc.stderr


def test_overrides_are_validated_like_the_file(tmp_path):
    path = write_study(tmp_path, smoke_dict(tmp_path))
    study = load_study(path, ["train.epochs=5", "search.seeds=[3, 4]", "arch.growth=6"])
    assert study.train.epochs == 5 and study.search.seed_list == [3, 4] and study.arch.growth == 6
    with pytest.raises(ConfigError, match="train.epochs"):
        load_study(path, ["train.epochs=-1"])
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_study(path, ["data.colour=red"])


def test_search_kinds_and_named_space(tmp_path):
    study = load_study(write_study(tmp_path, smoke_dict(tmp_path)))
    assert isinstance(study.search, GridSearch)
    pareto = load_study(REPO / "studies" / "connectivity_pareto.yaml")
    assert isinstance(pareto.search, OptunaSearchConfig) and pareto.search.sampler == "nsga2"
    assert set(pareto.space) == {"pattern", "depth", "growth"}
    assert [o.mode for o in pareto.search.objectives] == ["max", "min"]


def test_every_search_space_file_is_valid():
    from connectome.study.schema import load_space

    files = sorted((REPO / "search_spaces").glob("*.yaml"))
    assert files
    for f in files:
        space = load_space(f.stem, str(REPO / "studies" / "x.yaml"))
        assert space and all(yaml.safe_load(f.read_text())[k] for k in space)


@pytest.mark.parametrize("metric, instead", [("test_acc", "best_val_acc"), ("test_error", "best_val_acc"),
                                             ("test_loss", "final_val_acc"), ("test_bpb", "best_val_bpb (mode: min)")])
def test_test_metric_is_no_objective(tmp_path, capsys, metric, instead):
    objectives = [{"metric": metric, "mode": "max"}]
    path = write_study(tmp_path, _set("search", {**OPTUNA, "objectives": objectives})(smoke_dict(tmp_path)))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"{metric!r} is a test metric" in err and instead in err


def test_validation_objective_needs_a_validation_split(tmp_path):
    data = _set("search", OPTUNA)(smoke_dict(tmp_path))
    data["data"]["val_size"] = 0
    with pytest.raises(ConfigError, match="best_val_acc needs a validation split"):
        load_study(write_study(tmp_path, data))


def test_no_shipped_study_optimises_a_test_metric():
    files = [*sorted((REPO / "studies").rglob("*.yaml")), *sorted((REPO / "benchmarks").glob("*.yaml"))]
    assert files
    for f in files:
        search = yaml.safe_load(f.read_text()).get("search", {})
        metrics = [o["metric"] for o in search.get("objectives", [])]
        assert not [m for m in metrics if m.startswith("test_")], f
        if "search" in yaml.safe_load(f.read_text()):  # benchmarks/ also holds trial configs
            load_study(f)


def test_optuna_storage_is_a_file_kind_or_a_database_url(tmp_path):
    from connectome.study.schema import OptunaSearchConfig

    base = {"kind": "optuna", "space": {"growth": {"choices": [2, 4]}}, "n_trials": 2,
            "objectives": [{"metric": "best_val_acc", "mode": "max"}]}
    assert OptunaSearchConfig.model_validate({**base, "storage": "journal"}).storage == "journal"
    assert OptunaSearchConfig.model_validate({**base, "storage": "postgresql://u@h/db"}).storage
    with pytest.raises(ValueError, match="'journal', or a database URL"):
        OptunaSearchConfig.model_validate({**base, "storage": "mydb"})



def test_a_study_name_too_long_for_its_directories_is_refused_at_load(tmp_path):
    # issue 30: a 300-character name passed --dry-run and failed later
    from connectome.errors import ConfigError

    path = write_study(tmp_path, smoke_dict(tmp_path, name="n" * 300))
    with pytest.raises(ConfigError, match="name: String should have at most 100 characters"):
        load_study(path)
    assert load_study(write_study(tmp_path, smoke_dict(tmp_path, name="n" * 100))).name == "n" * 100


@pytest.mark.parametrize("section, key, value, expected", [
    ("train", "epochs", True, "train.epochs: a number is needed, not true"),
    ("arch", "classes", 1, "arch.classes is 1 but the synthetic data has 4 classes"),
])
def test_a_boolean_count_or_classes_against_the_data_is_refused_at_load(tmp_path, section, key, value, expected):
    """issue 30: `train.epochs: true` ran 1 epoch and `arch.classes: 1` was silently replaced by the data's 4."""
    data = smoke_dict(tmp_path)
    data[section][key] = value
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_study(write_study(tmp_path, data))


def test_classes_left_out_or_from_a_preset_still_come_from_the_data(tmp_path):
    data = smoke_dict(tmp_path)
    del data["arch"]["classes"]
    load_study(write_study(tmp_path, data))
    data["arch"] = {"preset": "densenet-121"}  # classes 1000 in the preset: sized from the data, as before
    load_study(write_study(tmp_path, data))
