"""A realistic fake results directory, laid out as the study driver writes it (connectome.store).

dense and partial x growth 4 and 8 x seeds 0..2: one trial failed, one diverged, one is planned
but has no result yet (running), and trials.parquet lags behind the journal.
Known answers: partial is worse than dense by exactly PARTIAL_PENALTY on every seed.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

PARTIAL_PENALTY = 0.03
FAILED = "partial-g8-s2"
DIVERGED = "dense-g4-s2"
RUNNING = "dense-g8-s2"
EPOCHS = 5


def trial_row(pattern: str, growth: int, seed: int) -> dict:
    """The flat row of one finished trial (columns as in docs/design.md)."""
    trial_id = f"{pattern}-g{growth}-s{seed}"
    seed_effect = [0.004, -0.002, 0.001][seed]
    error = 0.40 - 0.02 * growth + seed_effect + (PARTIAL_PENALTY if pattern == "partial" else 0.0)
    row = {
        "pattern": pattern, "depth": None, "block_layers": "3", "growth": growth,
        "m": "8" if pattern == "partial" else None, "bottleneck": False, "compression": 1.0,
        "train.epochs": EPOCHS, "train.lr": 0.1, "data.name": "synthetic", "seed": seed,
        "trial_id": trial_id, "study": "fake", "status": "completed", "error": None,
        "params": (1500 if pattern == "partial" else 2800) * growth // 4,
        "flops": 100_000 * growth, "graph_hash": f"{pattern}{growth:02d}".ljust(16, "0"),
        "test_error": error, "test_acc": 1.0 - error, "best_val_acc": 1.0 - error + 0.01,
        "wall_time_s": 1.5 + seed,
    }
    if trial_id == FAILED:
        row.update(status="failed", error="Traceback ...\nRuntimeError: CUDA out of memory",
                   test_error=None, test_acc=None, best_val_acc=None)
    if trial_id == DIVERGED:
        row.update(status="diverged", test_error=0.9, test_acc=0.1, best_val_acc=0.1)
    return row


def epoch_rows(row: dict) -> list[dict]:
    """Per-epoch curves: loss decays, accuracy rises towards the trial's final accuracy."""
    if row["status"] == "failed":
        return []
    rng = np.random.default_rng(zlib.crc32(row["trial_id"].encode()))
    final = row["test_acc"]
    return [{"epoch": e, "train_loss": 2.0 / (e + 1) + 0.02 * rng.random(),
             "train_acc": final * (1 - 0.5 ** (e + 1)), "val_loss": 2.2 / (e + 1),
             "val_acc": final * (1 - 0.6 ** (e + 1)) + 0.01 * rng.random(), "lr": 0.1,
             "seconds": 0.3, "images_per_s": 1000.0} for e in range(EPOCHS)]


def save_model(trial_dir: Path, pattern: str, growth: int) -> None:
    """spec.json and model.pt of a tiny real model, as the trainer keeps them."""
    from connectome import build_spec, make_arch
    from connectome.executor import ConnectomeNet

    arch = make_arch(pattern=pattern, block_layers=[3], growth=growth, classes=3,
                     **({"m": 8} if pattern == "partial" else {}))
    spec = build_spec(arch)
    (trial_dir / "spec.json").write_text(spec.to_json())
    torch.save(ConnectomeNet(spec).state_dict(), trial_dir / "model.pt")


def make_results_dir(root: Path, with_models: bool = True) -> Path:
    """Write the fake study under root/fake and return its path."""
    from connectome.store.layout import StudyDir, write_trial_config, write_trial_result

    path = root / "fake"
    sd = StudyDir(path)
    rows = [trial_row(p, g, s) for p in ("dense", "partial") for g in (4, 8) for s in range(3)]
    (path / "trials").mkdir(parents=True)
    (path / "study.yaml").write_text("name: fake\nsearch: {grid: {pattern: [dense, partial], growth: [4, 8]}}\n")
    sd.stamp(study="fake")
    sd.write_plan([row["trial_id"] for row in rows])
    finished = 0
    for row in rows:
        files = sd.trial(row["trial_id"])
        write_trial_config(files, {"arch": {"pattern": row["pattern"]}, "seed": row["seed"]}, study="fake")
        if row["trial_id"] == RUNNING:
            continue
        entry = write_trial_result(files, row, epoch_rows(row))
        if with_models and row["status"] == "completed" and row["seed"] == 0:
            save_model(files.dir, row["pattern"], row["growth"])
        sd.record(entry)
        finished += 1
        if finished == 8:
            sd.compact()  # the driver has not compacted the parquet files since 3 trials ended
    return path
