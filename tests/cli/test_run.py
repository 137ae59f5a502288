"""`connectome run`: --dry-run of every shipped study, and kill -9 then --resume with a real process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from connectome.cli import main
from connectome.study import expand_grid, load_study

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "studies").glob("**/*.yaml"))


def test_every_shipped_study_is_found():
    names = {p.relative_to(REPO / "studies").as_posix() for p in SHIPPED}
    assert {"smoke.yaml", "partial_vs_dense.yaml", "connectivity_pareto.yaml"} <= names
    assert any(n.startswith("paper/") for n in names)


def _grids_planned(monkeypatch) -> list[tuple]:
    """(study, trials) of each grid the dry run plans, so a test checks its output without planning again.

    Planning a shipped grid takes up to seconds of CPU (random_wiring.yaml: 213 budget-matched trials).
    """
    from connectome.study import dryrun

    planned = []

    def expand_and_keep(study):
        trials = expand_grid(study)
        planned.append((study, trials))
        return trials

    monkeypatch.setattr(dryrun, "expand_grid", expand_and_keep)
    return planned


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(REPO / "studies").as_posix())
def test_dry_run_of_shipped_study(path, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and no data is needed
    monkeypatch.setenv("CONNECTOME_DATA", str(tmp_path / "no-data"))
    planned = _grids_planned(monkeypatch)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    study = load_study(path)
    per = "token" if study.data.name == "text" else "image"
    assert study.name in out and "params" in out and f"M MACs/{per}" in out
    if study.search.kind == "grid":
        [(as_planned, trials)] = planned  # planned once, from the study as loaded here (expand_grid is pure)
        assert as_planned == study and trials
        assert f"{len(trials)} trials" in out
        assert all(t.trial_id in out for t in trials)
    assert not any(tmp_path.iterdir())


def test_span_curve_runs_distinct_graphs_from_a_chain_to_dense():
    study = load_study(REPO / "studies" / "span_curve.yaml")
    trials = [t for t in expand_grid(study) if t.config.seed == 0]
    assert [t.config.arch.pattern_options["max_span"] for t in trials] == [1, 2, 4, None]
    assert not any(t.rejected for t in expand_grid(study))  # no span repeats the dense graph
    params = [t.params for t in trials]
    assert params == sorted(params) and len(set(params)) == 4
    assert study.data.name == "fashion-mnist" and len(study.search.seed_list) == 3


def test_span_curve_matched_lands_every_span_near_the_budget():
    """Growth is chosen per span, so reach no longer buys parameters: all within 15% of 60k."""
    study = load_study(REPO / "studies" / "span_curve_matched.yaml")
    trials = [t for t in expand_grid(study) if t.config.seed == 0]
    assert [t.config.arch.pattern_options["max_span"] for t in trials] == [1, 2, 4, None]
    assert not any(t.rejected for t in expand_grid(study))
    assert [t.config.arch.growth for t in trials] == [8, 6, 5, 4]
    assert all(abs(t.params - 60_000) <= 0.15 * 60_000 for t in trials)
    fixed = {t.config.arch.pattern_options["max_span"]: t.params
             for t in expand_grid(load_study(REPO / "studies" / "span_curve.yaml"))}
    assert [t.params for t in trials][0] == fixed[1]  # the target is the fixed-growth curve's s = 1 network
    assert study.data == load_study(REPO / "studies" / "span_curve.yaml").data


def test_partial_vs_dense_is_the_papers_comparison():
    study = load_study(REPO / "studies" / "partial_vs_dense.yaml")
    trials = expand_grid(study)
    assert {t.config.arch.pattern for t in trials} == {"dense", "partial"}
    assert study.data.name == "fashion-mnist" and len(study.search.seed_list) == 3
    # The paper's structure (v1, Section 5): L = 40, k = 12, 16-channel 32x32-style stem, m = 16/160/304.
    for trial in trials:
        arch = trial.config.arch
        assert (arch.depth, arch.growth, arch.stem, arch.stem_channels) == (40, 12, "cifar", 16)
    partial = [t for t in trials if t.config.arch.pattern == "partial"]
    assert {tuple(t.config.arch.m) for t in partial} == {(16, 160, 304)}
    paper = load_study(REPO / "studies" / "paper" / "partial_vs_dense_c10plus.yaml")
    arch = expand_grid(paper)[0].config.arch
    assert (paper.data.name, paper.train.epochs, arch.depth, arch.growth) == ("cifar10", 300, 40, 12)


PAPER = sorted((REPO / "studies" / "paper").glob("*.yaml"))


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_paper_studies_evaluate_as_the_paper_did(path):
    """CIFAR: all 50,000 training images, 300 epochs; SVHN: train + extra, 40 epochs, 6,000 held out."""
    study = load_study(path)
    # connectome's own question, and RDNet's pilot at its own recipe: not the DenseNet paper's figures; the
    # depth-wiring papers' decoders (data.name text) keep their own recipes (tests/study/test_depth_wiring_studies.py)
    if path.name in ("patterns_budget_c10plus.yaml", "reloaded_tiny_imagenet.yaml") or study.data.name == "text":
        return
    if study.data.name == "svhn":
        assert (study.data.svhn_extra, study.train.epochs, study.data.val_size) == (True, 40, None)
        assert study.train.test_each_epoch  # for test_error_at_best_val
    else:
        assert (study.data.val_size, study.train.epochs) == (0, 300)
    assert study.train.batch_size == 64 and study.train.schedule == "step"


def test_table1_studies_cover_the_three_densenet_rows_on_five_settings():
    from connectome.reference import trial_settings

    seen = set()
    for path in (REPO / "studies" / "paper").glob("table1_densenet_*.yaml"):
        study = load_study(path)
        for trial in expand_grid(study):
            row = pd.DataFrame([{"data.name": study.data.name, "data.augment": study.data.augment}])
            seen.add((trial.config.arch.preset, trial_settings(row).iloc[0]))
    presets = ("densenet-40-12", "densenet-100-12", "densenet-100-24")
    assert seen == {(p, s) for p in presets for s in ("C10", "C10+", "C100", "C100+", "SVHN")}


def _study_file(tmp_path: Path) -> Path:
    """Three synthetic trials of 20 short epochs, one at a time, so a kill lands mid-trial."""
    data = yaml.safe_load((REPO / "studies" / "smoke.yaml").read_text())
    data.update(name="resume", output=str(tmp_path / "results"))
    data["train"]["epochs"] = 20
    data["search"] = {"kind": "grid", "variants": [{"pattern": "dense"}, {"pattern": "partial"}, {"pattern": "plain"}]}
    data["resources"] = {"cpu": 1, "max_concurrent": 1}
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _connectome_run(path: Path, *extra: str, log: Path) -> subprocess.Popen:
    """`connectome run` as a real process in its own process group."""
    return subprocess.Popen([sys.executable, "-m", "connectome", "run", str(path), *extra],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=path.parent,
                            start_new_session=True)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of a run's process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
@pytest.mark.timeout(480)
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143)], ids=["SIGTERM"])
def test_a_signal_then_kill_9_then_resume_complete_the_study(tmp_path, ray_head, sig, code):
    """Three drivers on the session's head, one study: a signal, a SIGKILL, a clean --resume.

    Issue 30, case 2: Ctrl-C exited 0 with trials never run, SIGTERM dumped Ray's stack trace. One real
    process per signal (SIGINT and SIGHUP take the same path, each tested in
    tests/orchestration/test_interrupts.py; add a signal here to run it end to end too). Orphans of a
    killed private Ray: tests/orchestration/test_faults.py.
    """
    path = _study_file(tmp_path)
    first, second, third = [t.trial_id for t in expand_grid(load_study(path))]
    trials = tmp_path / "results" / "resume" / "trials"
    # a signal mid-trial: the exit code says which, one line says what is left and how to resume
    log = tmp_path / "run1.log"
    proc = _connectome_run(path, "--address", ray_head.gcs, log=log)
    try:
        _wait_for(lambda: "started" in log.read_text(), timeout=120, what=f"a trial to start (see {log})")
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=120) == code, log.read_text()[-3000:]
    finally:
        _kill_group(proc)
    text = log.read_text()
    assert f"interrupted by {signal.Signals(sig).name}: " in text and "of 3 trials of study 'resume' have no " \
        "result yet" in text, text[-2000:]
    assert f"resume with: connectome run {path} --address {ray_head.gcs} --resume" in text
    assert "Tuner.restore" not in text and "SIGTERM received" not in text

    # --resume, SIGKILLed once the first trial is finished and the second one is mid-way (checkpointed)
    proc = _connectome_run(path, "--resume", "--address", ray_head.gcs, log=tmp_path / "run2.log")
    try:
        _wait_for(lambda: (trials / first / "result.json").exists() and (trials / second / "checkpoint.pt").exists(),
                  timeout=240, what=f"a checkpoint of {second} (see {tmp_path / 'run2.log'})")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        time.sleep(1)
        _kill_group(proc)
    done_before = json.loads((trials / first / "result.json").read_text())
    assert not (trials / second / "result.json").exists() and not (trials / third / "result.json").exists()

    proc = _connectome_run(path, "--resume", "--no-report", "--address", ray_head.gcs, log=tmp_path / "run3.log")
    try:
        assert proc.wait(timeout=300) == 0, (tmp_path / "run3.log").read_text()
    finally:
        _kill_group(proc)
    log = (tmp_path / "run3.log").read_text()
    assert "3 trials, 1 finished, 2 to run" in log
    # the finished trial was not run again; the interrupted one continued from its checkpoint
    from connectome.store.labels import label_from_trial_file

    first_label, second_label = (label_from_trial_file(trials / t / "config.json") for t in (first, second))
    assert f"{first_label}: started" not in log  # the live view names trials by what they are
    resumed_epochs = [int(line.split("epoch ")[1].split("/")[0]) for line in log.splitlines()
                      if f"{second_label}: epoch" in line]
    assert resumed_epochs and resumed_epochs[0] > 1 and resumed_epochs[-1] == 20
    assert json.loads((trials / first / "result.json").read_text()) == done_before
    # no trial lost or duplicated, every epoch exactly once
    rows = pd.read_parquet(tmp_path / "results" / "resume" / "trials.parquet")
    assert sorted(rows["trial_id"]) == sorted([first, second, third]) and rows["trial_id"].is_unique
    assert set(rows["status"]) == {"completed"}
    epochs = pd.read_parquet(tmp_path / "results" / "resume" / "epochs.parquet")
    for trial_id, group in epochs.groupby("trial_id"):
        assert sorted(group["epoch"]) == list(range(1, 21)), trial_id


@pytest.mark.parametrize("path", [REPO / "studies" / "smoke.yaml", REPO / "studies" / "partial_vs_dense.yaml"],
                         ids=lambda p: p.name)
def test_dry_run_json_lists_every_planned_trial(path, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path), "--dry-run", "--json", "-s", "train.epochs=3"]) == 0
    plan = json.loads(capsys.readouterr().out)
    trials = expand_grid(load_study(path, ["train.epochs=3"]))
    assert plan["study"] == load_study(path).name and plan["epochs"] == 3
    assert [t["trial_id"] for t in plan["trials"]] == [t.trial_id for t in trials]
    for row, trial in zip(plan["trials"], trials):
        assert row["pattern"] == trial.config.arch.pattern
        assert row["arch"]["growth"] == trial.config.arch.growth and row["arch"]["depth"] == trial.config.arch.depth
        assert (row["params"], row["macs"], row["seed"]) == (trial.params, trial.flops, trial.config.seed)
    assert not any(tmp_path.iterdir())


def test_dry_run_json_of_an_optuna_study_gives_its_space(capsys):
    assert main(["run", str(REPO / "studies" / "connectivity_pareto.yaml"), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["search"] == "optuna" and plan["n_trials"] == 24 and plan["trials"] == []
    assert "pattern" in plan["space"] and plan["objectives"][0] == {"metric": "best_val_acc", "mode": "max"}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_run_with_a_plugin_pattern_in_ray_workers(tmp_path, ray_head):
    """A study names a plugin file; Ray workers load it, -v shows their output, --json the summary."""
    plugin = (REPO / "examples" / "pairs_pattern.py").read_text()
    marker = "import sys\nprint('pairs plugin loaded', file=sys.stderr)\n"
    (tmp_path / "pairs_pattern.py").write_text(plugin + marker)
    data = yaml.safe_load((REPO / "studies" / "smoke.yaml").read_text())
    data.update(name="plugged", plugins=["pairs_pattern.py"])
    data["search"] = {"kind": "grid", "variants": [{"pattern": "pairs"}], "seeds": 2}
    data["resources"] = {"cpu": 1, "max_concurrent": 1}  # one Ray worker (a torch import) for both
    study = tmp_path / "plugged.yaml"
    study.write_text(yaml.safe_dump(data, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "connectome", "run", str(study), "-v", "--json", "--no-report",
                           "-o", str(tmp_path / "out"), "--address", ray_head.gcs],
                          capture_output=True, text=True, cwd=REPO, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["status_counts"] == {"completed": 2}
    assert {row["pattern"] for row in summary["rows"]} == {"pairs"}
    # Ray prefixes what a worker prints with its pid; the driver's own import has no prefix.
    assert any("pid=" in line and "pairs plugin loaded" in line for line in done.stderr.splitlines())


def test_run_summary_json_is_strict_json():
    from connectome.cli.run import counts_line, summary_json

    frame = pd.DataFrame([
        {"trial_id": "dense-1", "status": "completed", "test_acc": 0.9, "finished": pd.Timestamp("2026-01-02")},
        {"trial_id": "dense-2", "status": "failed", "test_acc": float("nan"), "finished": pd.NaT},
    ])
    study = load_study(REPO / "studies" / "smoke.yaml")
    data = json.loads(json.dumps(summary_json(study, frame), allow_nan=False))
    assert data["status_counts"] == {"completed": 1, "failed": 1} and data["results_dir"] == "results/smoke"
    assert data["rows"][1]["test_acc"] is None and data["rows"][0]["finished"].startswith("2026-01-02")
    assert counts_line(frame) == "2 trials: 1 completed, 1 failed"
    [answer] = data["answer"]  # one completed trial, no validation accuracy: nothing to choose on
    assert answer.startswith("No trial recorded a validation accuracy, so no configuration can be chosen")
