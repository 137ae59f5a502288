"""`connectome train`: YAML file and flags over the same keys, artefacts, one-line errors."""
import json
import math
import re

import pytest
import yaml

from connectome.cli import main

TINY_YAML = {
    "arch": {"block_layers": [2], "growth": 4},
    "data": {"name": "synthetic", "synthetic": {"train": 128, "test": 32, "size": 8, "classes": 3}},
    "train": {"epochs": 3, "batch_size": 32, "threads": 1},
    "seed": 1,
}


def run(capsys, *argv):
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_yaml_file_with_flag_overrides(tmp_path, capsys):
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(TINY_YAML))
    code, out, _ = run(capsys, str(path), "--epochs", "1", "--set", "arch.growth=6", "--seed", "2",
                       "--trial-dir", str(tmp_path / "t"), "--json")
    record = json.loads(out)
    assert code == 0 and record["status"] == "completed"
    assert (record["train.epochs"], record["growth"], record["seed"], record["classes"]) == (1, 6, 2, 3)
    assert {p.name for p in (tmp_path / "t").iterdir()} >= {"result.json", "spec.json", "model.pt"}


def test_flags_alone_print_progress_and_summary(capsys):
    code, out, _ = run(capsys, "--dataset", "synthetic", "--set", "arch.block_layers=[1]", "--set",
                       "data.synthetic={train: 64, test: 16, size: 8}", "--epochs", "2", "--threads", "1")
    assert code == 0
    assert sum(line.startswith("epoch ") for line in out.splitlines()) == 2 and "status completed" in out and "test acc" in out


def test_unknown_key_is_a_one_line_error(capsys):
    code, out, err = run(capsys, "--set", "train.epoch=3")
    assert code == 2 and "train.epoch: unknown key" in err and err.count("\n") == 1


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CONNECTOME_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "--dataset", "cifar100", "--set", "data.download=false")
    assert code == 2 and "dataset 'cifar100' not found" in err and err.count("\n") == 1


def test_bad_yaml_names_the_file(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("arch: [unclosed\n")
    code, _, err = run(capsys, str(path))
    assert code == 2 and str(path) in err and "not valid YAML" in err


def test_malformed_override(capsys):
    code, _, err = run(capsys, "--set", "train.epochs")
    assert code == 2 and "KEY=VALUE" in err


def test_the_help_example_is_a_trial_of_seconds(capsys):
    import shlex

    from connectome.cli import build_parser
    from connectome.cli.train import EXAMPLES, trial_config
    from connectome.training.plan import plan_trial
    from connectome.training.resolve import EAGER_FLOPS, training_flops

    with pytest.raises(SystemExit) as shown:
        main(["train", "--help"])
    assert shown.value.code == 0
    first = next(line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("connectome"))
    assert first == EXAMPLES[0]
    args = build_parser().parse_args(shlex.split(first)[1:])
    plan = plan_trial(trial_config(args))
    assert (plan.config.data.name, plan.config.train.epochs, plan.input_size) == ("synthetic", 2, (3, 8, 8))
    # its training passes take under 2 s on one core at the measured fp32 throughput (the 40-12 preset took minutes)
    assert training_flops(plan.config, plan.flops) / EAGER_FLOPS["fp32"] < 2.0


def test_progress_inside_an_epoch_is_shown_as_a_study_shows_it(capsys, monkeypatch):
    from connectome.orchestration import batch_progress, progress

    monkeypatch.setattr(batch_progress, "UPDATE_INTERVAL_S", 0.0)
    monkeypatch.setattr(progress, "BATCH_LINE_INTERVAL", 0.0)  # a log's batch line at every update
    code, out, _ = run(capsys, "--dataset", "synthetic", "--pattern", "partial", "--set", "arch.block_layers=[1]",
                       "--set", "data.synthetic={train: 96, test: 16, size: 8}", "--epochs", "2", "--threads", "1",
                       "--batch-size", "16")
    assert code == 0
    lines = out.splitlines()
    assert "partial, seed 0: started" in lines[0]
    shown = [re.search(r"partial, seed 0: epoch 2/2, batch (\d+)/(\d+), [\d,]+ img/s", line) for line in lines]
    steps = [(int(m[1]), int(m[2])) for m in shown if m]
    assert len(steps) >= 2 and steps[-1][0] == steps[-1][1] == 6  # 96 images in batches of 16
    assert sum(line.startswith("epoch ") for line in lines) == 2


def _fail_if_trained(monkeypatch):
    import connectome.training

    def trained(*args, **kwargs):
        raise AssertionError("reached training")
    monkeypatch.setattr(connectome.training, "train_trial", trained)


def test_a_graph_file_over_the_params_limit_is_refused_before_training(tmp_path, capsys, monkeypatch):
    """issue 30: a graph file with a node 10^12 channels wide tried to allocate 576 TB; limits.params applies."""
    import networkx as nx

    g = nx.DiGraph([(0, 1), (1, 2)])
    g.nodes[1]["width"] = 10**12
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(nx.node_link_data(g, edges="links")))
    path_yaml = tmp_path / "trial.yaml"
    path_yaml.write_text(yaml.safe_dump({**TINY_YAML, "arch": {"block_layers": [2], "growth": 4, "pattern": "file",
                                                               "pattern_options": {"path": str(path)}}}))
    _fail_if_trained(monkeypatch)
    code, _, err = run(capsys, str(path_yaml))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "params (counted from the spec) is" in err and "over the limit of 500,000,000" in err
    assert "--set limits.params=N" in err


@pytest.mark.parametrize("override, expected", [
    ("train.epochs=true", "train.epochs: a number is needed, not true"),
    ("seed=false", "seed: a number is needed, not false"),
    ("arch.classes=1", "arch.classes is 1 but the synthetic data has 3 classes"),
])
def test_a_boolean_count_or_classes_against_the_data_is_refused_naming_the_key(tmp_path, capsys, monkeypatch,
                                                                               override, expected):
    """issue 30: `train.epochs=true` trained 1 epoch; `arch.classes=1` was silently replaced by the data's."""
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(TINY_YAML))
    _fail_if_trained(monkeypatch)
    code, _, err = run(capsys, str(path), "--set", override)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_a_language_model_prints_bits_per_byte_and_tokens_per_second(capsys):
    from connectome.cli.train import print_epoch, summary

    print_epoch({"epoch": 2, "train_bpb": 3.25, "val_bpb": 3.5, "lr": 0.001, "seconds": 4.0, "tokens_per_s": 812.0,
                 "train_loss": 2.2, "train_acc": 0.3, "val_acc": 0.31, "images_per_s": math.nan})
    assert capsys.readouterr().out.split() == ["interval", "2", "train", "3.2500", "bpb", "val", "3.5000", "bpb",
                                               "lr", "0.001", "4.0s", "812", "tokens/s"]
    text = summary({"status": "completed", "graph_hash": "g", "params": 9, "flops": 7, "test_bpb": 3.4,
                    "best_val_bpb": 3.5, "best_val_epoch": 2, "epochs_completed": 2, "wall_time_s": 5.0,
                    "device": "cpu", "error": None})
    assert "(multiply-adds per token)" in text and "test 3.4000 bpb  best val 3.5000 bpb (interval 2)" in text
