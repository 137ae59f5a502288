"""Size bounds: absurd studies stop at load time with the key, the size and the override."""
from __future__ import annotations

import pytest

from connectome.cli import main
from connectome.errors import ConfigError
from connectome.study import expand_grid, load_study
from connectome.study.limits import Limits, plan_size
from connectome.study.schema import GridSearch

from study.conftest import smoke_dict, write_study

LEVELS_40 = list(range(1, 41))

# (id, --set overrides, substrings of the one-line error)
OVER = [
    ("billion-seeds", ["search.seeds=1000000000"], ["the plan is 2,000,000,000", "limits: {trials: N}"]),
    ("grid-40^4", [f"search.factors={{growth: {LEVELS_40}, train.lr: {LEVELS_40}, train.momentum: {LEVELS_40}, "
                   f"train.weight_decay: {LEVELS_40}}}"], ["the plan is 10,240,000"]),
    ("optuna-n_trials", ["search={kind: optuna, space: connectivity, n_trials: 100000, "
                         "objectives: [{metric: best_val_acc, mode: max}]}"], ["the plan is 100,000"]),
    ("depth", ["arch.depth=100003"], ["depth is 100,003", "limits: {depth: N}"]),
    ("block_layers", ["arch.block_layers=[600, 600]", "arch.depth=null"], ["depth is 1,203"]),
    ("depth-factor", ["search.factors={depth: [10, 40000]}"], ["depth is 40,000"]),
    ("growth", ["arch.growth=100000"], ["growth is 100,000", "limits: {growth: N}"]),
    ("growth-in-space", ["search={kind: optuna, n_trials: 2, space: {growth: {low: 2, high: 999999}}, "
                         "objectives: [{metric: params, mode: min}]}"], ["growth is 999,999"]),
    ("batch", ["train.batch_size=10000000"], ["train.batch_size is 10,000,000", "limits: {batch_size: N}"]),
    ("eval-batch", ["train.eval_batch_size=10000000"], ["train.eval_batch_size is 10,000,000"]),
    ("synthetic", ["data.synthetic.train=100000000"], ["data.synthetic (MiB of images) is", "synthetic_mib"]),
]


@pytest.mark.parametrize("overrides, expected", [o[1:] for o in OVER], ids=[o[0] for o in OVER])
def test_over_a_limit_is_one_line_before_anything_is_built(tmp_path, capsys, overrides, expected):
    path = write_study(tmp_path, smoke_dict(tmp_path))
    args = ["run", str(path), "--dry-run"] + [a for o in overrides for a in ("--set", o)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for part in expected:
        assert part in err


def test_plan_size_is_counted_not_expanded():
    search = GridSearch(kind="grid", factors={"a": LEVELS_40, "b": LEVELS_40}, variants=[{}, {}], seeds=10**9)
    assert plan_size(search) == 2 * 40 * 40 * 10**9


def test_limits_section_raises_a_bound(tmp_path):
    path = write_study(tmp_path, smoke_dict(tmp_path))
    with pytest.raises(ConfigError, match="the plan is 20,000"):
        load_study(path, ["search.seeds=10000"])
    study = load_study(path, ["search.seeds=10000", "limits.trials=20000"])
    assert study.limits.trials == 20_000 and study.limits.depth == Limits().depth


def test_limits_section_is_validated(tmp_path):
    path = write_study(tmp_path, smoke_dict(tmp_path))
    with pytest.raises(ConfigError, match="limits.depht: unknown key 'depht'; allowed: trials, depth"):
        load_study(path, ["limits.depht=5"])
    with pytest.raises(ConfigError, match="limits.trials"):
        load_study(path, ["limits.trials=0"])


def test_candidate_over_the_params_limit_is_rejected_before_training(tmp_path):
    path = write_study(tmp_path, smoke_dict(tmp_path))
    trials = expand_grid(load_study(path, ["limits.params=2000"]))
    assert trials and all(t.params > 2000 for t in trials)
    assert all("params > limits.params 2,000 (raise it under `limits:`)" in t.rejected for t in trials)
    assert not any(t.rejected for t in expand_grid(load_study(path)))


def test_limits_are_not_part_of_the_definition(tmp_path):
    from connectome.study.definition import fingerprint

    path = write_study(tmp_path, smoke_dict(tmp_path))
    dumps = [load_study(path, o).model_dump(mode="json") for o in ([], ["limits.trials=20000", "limits.depth=5000"])]
    assert fingerprint(dumps[0]) == fingerprint(dumps[1])
    # a results directory planned before `limits` existed keeps its fingerprint
    assert fingerprint({k: v for k, v in dumps[0].items() if k != "limits"}) == fingerprint(dumps[0])


def test_named_search_space_is_bounded_too(tmp_path):
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "wide.yaml").write_text("growth: {low: 2, high: 5000}\n")
    data = smoke_dict(tmp_path)
    data["search"] = {"kind": "optuna", "space": "wide", "n_trials": 2,
                      "objectives": [{"metric": "params", "mode": "min"}]}
    with pytest.raises(ConfigError, match="growth is 5,000, over the limit of 1,024"):
        load_study(write_study(tmp_path, data))
    data["search"]["space"] = "missing"
    with pytest.raises(ConfigError, match="search space 'missing' not found"):
        load_study(write_study(tmp_path, data))


@pytest.mark.parametrize("args, expected", [
    (["graph", "--depth", "100000000"], "depth is 100,000,000 (99,999,996 layers), over the limit of 1,000 layers; raise the limit with --limit depth=N"),
    (["graph", "--growth", "5000"], "growth is 5,000"),
    (["graph", "--depth", "40", "--limit", "dpth=5"], "--limit: dpth: Extra inputs"),
    (["train", "--dataset", "synthetic", "--batch-size", "10000000"],
     "train.batch_size is 10,000,000, over the limit of 65,536; raise the limit with `--set limits.batch_size=N`"),
    (["train", "--dataset", "synthetic", "--set", "data.synthetic.train=100000000"], "data.synthetic (MiB of images)"),
    (["train", "--dataset", "synthetic", "--set", "limits.bogus=1"], "limits.bogus: Extra inputs"),
])
def test_one_network_commands_are_bounded_too(capsys, args, expected):
    assert main(args) == 2  # before any spec is built or data generated: a hang or MemoryError before
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err


def test_one_network_bounds_can_be_set(capsys):
    # DenseNet-40 has 36 layer nodes: refused under a bound of 35, built under 36 (a 1,003-deep net took 13 s)
    assert main(["graph", "--depth", "40", "--limit", "depth=35"]) == 2
    assert "depth is 40 (36 layers), over the limit of 35 layers" in capsys.readouterr().err
    assert main(["graph", "--depth", "40", "--limit", "depth=36", "--format", "json"]) == 0
    assert '"depth": 40' in capsys.readouterr().out


def _chain_file(path, layers: int) -> str:
    """A node-link JSON block of `layers` layers in a chain (each reads the one before)."""
    import json

    nodes = [{"id": i} for i in range(layers + 1)]
    links = [{"source": i, "target": i + 1} for i in range(layers)]
    path.write_text(json.dumps({"directed": True, "multigraph": False, "graph": {}, "nodes": nodes, "links": links}))
    return str(path)


def _chain_study(tmp_path, layers: int) -> dict:
    data = smoke_dict(tmp_path)
    data["arch"].update(pattern="file", pattern_options={"path": _chain_file(tmp_path / f"chain{layers}.json", layers)},
                        blocks=1)
    data["search"] = {"kind": "grid", "seeds": 1}
    return data


def test_a_graph_file_deeper_than_the_limit_is_rejected_before_it_is_hashed(tmp_path, monkeypatch):
    # issue 30, case 6: 3,000 layers from a file were accepted (limits.depth 1,000) and took 115 s to hash
    from connectome import canonical

    data = _chain_study(tmp_path, 1_500)
    monkeypatch.setattr(canonical, "block_canonical_hash", lambda block: pytest.fail("a rejected network was hashed"))
    trials = expand_grid(load_study(write_study(tmp_path, data)))
    assert [t.rejected for t in trials] == ["1,500 layers > limits.depth 1,000 (raise it under `limits:`)"]
    from connectome.study.dryrun import plan_json

    planned = plan_json(load_study(write_study(tmp_path, data)))["trials"][0]
    assert planned["status"] == "rejected" and planned["canonical_hash"] is None
    monkeypatch.undo()
    raised = expand_grid(load_study(write_study(tmp_path, _chain_study(tmp_path, 12)), ["limits.depth=11"]))
    assert raised[0].rejected.startswith("12 layers > limits.depth 11")
    assert not expand_grid(load_study(write_study(tmp_path, _chain_study(tmp_path, 12))))[0].rejected


@pytest.mark.parametrize("kind", ["directory", "fifo", "oversized"])
def test_a_graph_path_that_is_no_small_regular_file_is_one_line_before_it_is_read(tmp_path, capsys, monkeypatch, kind):
    import os

    from connectome import patterns

    path = tmp_path / "g.json"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    else:
        _chain_file(path, 50)
        monkeypatch.setattr(patterns, "MAX_GRAPH_FILE_BYTES", 1_000)
    code = main(["graph", "--pattern", "file", "--pattern-option", f"path={path}", "--blocks", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert ("is not a regular file" if kind != "oversized" else "bytes, over the 1,000 a graph file may have") in err


def test_connectome_graph_applies_the_depth_limit_to_graph_files(tmp_path, capsys):
    chain = _chain_file(tmp_path / "chain.json", 1_200)
    code = main(["graph", "--pattern", "file", "--pattern-option", f"path={chain}", "--blocks", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "layers (graph files included) is 1,200, over the limit of 1,000" in err
    assert "--limit depth=N" in err


def test_a_shipped_preset_is_within_the_default_limits_everywhere(tmp_path, capsys):
    # issue 26: preact-resnet-1001 (L = 1,001 convs, 330 units) was refused as "depth is 1,001"
    from connectome.cli.train import check_limits
    from connectome.training.config import TrialConfig

    assert main(["graph", "--preset", "preact-resnet-1001", "--format", "json"]) == 0
    capsys.readouterr()
    check_limits(TrialConfig(arch={"preset": "preact-resnet-1001"}), None, "config")
    data = smoke_dict(tmp_path)
    data["arch"] = {"preset": "preact-resnet-1001"}
    data["search"] = {"kind": "grid", "factors": {"depth": [164, 1001]}, "seeds": 1}
    assert load_study(write_study(tmp_path, data)).arch.preset == "preact-resnet-1001"
    data["search"]["factors"] = {"depth": [164, 3602]}  # 400 units a stage: over
    with pytest.raises(ConfigError, match=r"depth is 3,602 \(1,197 layers\), over the limit of 1,000 layers"):
        load_study(write_study(tmp_path, data))
