"""Training benchmarks (issue 3) on a real dataset: accuracy in a time budget, data share, bf16 vs fp32.

Ratios are measured side by side in one run: repetitions alternate (A,B then B,A, so drift
from other jobs on the machine hits both sides alike) and medians are reported.

    python benchmarks/training.py accuracy benchmarks/fashion_small.yaml   # one full trial
    python benchmarks/training.py data-share benchmarks/fashion_small.yaml
    python benchmarks/training.py precision benchmarks/fashion_small.yaml
    python benchmarks/training.py compile benchmarks/fashion_small.yaml   # compile time, break-even
    python benchmarks/training.py all benchmarks/fashion_small.yaml

On a machine shared with other jobs, run with OMP_WAIT_POLICY=PASSIVE: OpenMP threads that
spin-wait for a descheduled sibling made 2-thread steps ~10x slower here.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

from connectome.training import make_trial_config, train_trial
from connectome.training.trainer import Trial, autocast, epoch_seed, setup_trial, train_step

ACCURACY_TARGET = 0.90
TIME_BUDGET_S = 300.0
DATA_SHARE_LIMIT = 0.05


def load(path: Path, overrides: dict) -> dict:
    """The YAML trial config with train-section overrides."""
    raw = yaml.safe_load(path.read_text())
    raw.setdefault("train", {}).update(overrides)
    return raw


def bench_accuracy(raw: dict) -> None:
    """One complete trial: test accuracy and wall time against the target and budget."""
    t0 = time.perf_counter()
    record = train_trial(raw, on_epoch=lambda r: print(
        f"  epoch {r['epoch']}: train {r['train_acc']:.4f} val {r['val_acc']:.4f} "
        f"{r['seconds']:.0f}s {r['images_per_s']:.0f} img/s", flush=True))
    wall = time.perf_counter() - t0
    ok = record["test_acc"] >= ACCURACY_TARGET and wall <= TIME_BUDGET_S
    print(f"accuracy: status {record['status']}  test acc {record['test_acc']:.4f}  params {record['params']}  "
          f"wall {wall:.0f}s (incl. data loading)  threads {record['threads']}  "
          f"target >= {ACCURACY_TARGET} in <= {TIME_BUDGET_S:.0f}s: {'PASS' if ok else 'FAIL'}")


def _timed_steps(trial: Trial, steps: int, with_model: bool) -> float:
    """Seconds for `steps` batches: data only (gather, normalise, augment) or the full step."""
    gen = torch.Generator().manual_seed(epoch_seed(trial.cfg.seed, 0))
    n, bs = len(trial.data.train_y), trial.cfg.train.batch_size
    trial.forward.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, n, (bs,), generator=gen).to(trial.device)
        x, y = trial.data.batch(idx, gen)
        if with_model:
            train_step(trial, x, y)
    return time.perf_counter() - t0


def bench_data_share(raw: dict, steps: int, reps: int) -> None:
    """Share of a training step spent producing its batch (median over alternating reps)."""
    # With the paper's "+" augmentation (crop + flip), whatever the config says: the costlier case.
    trial = setup_trial(make_trial_config({**raw, "data": {**raw["data"], "augment": True}}))
    _timed_steps(trial, 2, with_model=True)  # warm-up
    data, full = [], []
    for r in range(reps):
        order = (False, True) if r % 2 == 0 else (True, False)
        for with_model in order:
            (full if with_model else data).append(_timed_steps(trial, steps, with_model))
    d, f = statistics.median(data), statistics.median(full)
    print(f"data share: batch {trial.cfg.train.batch_size}  augment {trial.data.augment}  "
          f"data {1e3 * d / steps:.2f} ms/step  full step {1e3 * f / steps:.1f} ms/step  "
          f"share {d / f:.2%} (limit {DATA_SHARE_LIMIT:.0%}: {'PASS' if d / f <= DATA_SHARE_LIMIT else 'FAIL'})")


def bench_precision(raw: dict, steps: int, reps: int) -> None:
    """Training throughput with bf16 autocast vs fp32, same model and batches."""
    trials = {p: setup_trial(make_trial_config({**raw, "train": {**raw["train"], "precision": p}}))
              for p in ("fp32", "bf16")}
    for t in trials.values():
        _timed_steps(t, 2, with_model=True)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for r in range(reps):
        for p in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            times[p].append(_timed_steps(trials[p], steps, with_model=True))
    bs = raw["train"].get("batch_size", 64)
    ips = {p: bs * steps / statistics.median(v) for p, v in times.items()}
    print(f"precision: fp32 {ips['fp32']:.0f} img/s  bf16 {ips['bf16']:.0f} img/s  "
          f"bf16/fp32 {ips['bf16'] / ips['fp32']:.2f}x  (batch {bs}, threads {torch.get_num_threads()})")


def bench_compile(raw: dict, steps: int, reps: int) -> None:
    """Compile time, compiled vs eager step time (same precision) and the break-even trial length."""
    trials = {c: setup_trial(make_trial_config({**raw, "train": {**raw["train"], "compile": c}}))
              for c in (False, True)}
    first = {}
    for c, t in trials.items():  # the compiled side's first training and eval calls compile
        t0 = time.perf_counter()
        _timed_steps(t, 1, with_model=True)
        t.forward.eval()
        with torch.no_grad(), autocast(t):
            t.forward(t.data.normalize(t.data.val_x[:8]))
        first[c] = time.perf_counter() - t0
    _timed_steps(trials[True], 1, with_model=True)  # a step after the eval-graph compile
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(reps):
        for c in ((False, True) if r % 2 == 0 else (True, False)):
            t0 = time.process_time()
            _timed_steps(trials[c], steps, with_model=True)
            times[c].append((time.process_time() - t0) / steps)
    eager, compiled = statistics.median(times[False]), statistics.median(times[True])
    ratios = [e / c for e, c in zip(times[False], times[True])]
    cost = first[True] - first[False]
    n, bs = len(trials[False].data.train_y), trials[False].cfg.train.batch_size
    steps_even = cost / max(eager - compiled, 1e-9)
    print(f"compile: precision {trials[True].cfg.train.precision}  compile (train + eval graphs) {cost:.0f} s wall  "
          f"step eager {eager * 1e3:.0f} ms, compiled {compiled * 1e3:.0f} ms (CPU time)  "
          f"speed-up {eager / compiled:.2f}x (per-round {min(ratios):.2f}-{max(ratios):.2f})  "
          f"break-even {steps_even:.0f} steps = {steps_even * bs / n:.2f} epochs of {n} images  "
          f"(load average {Path('/proc/loadavg').read_text().split()[:3]})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["accuracy", "data-share", "precision", "compile", "all"])
    parser.add_argument("config", type=Path, help="YAML trial config (keys arch, data, train, seed)")
    parser.add_argument("--threads", type=int, default=None, help="override train.threads")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repetition")
    parser.add_argument("--reps", type=int, default=6, help="alternating repetitions per side")
    args = parser.parse_args(argv)
    raw = load(args.config, {"threads": args.threads} if args.threads else {})
    print(f"config {args.config}  torch {torch.__version__}  cpu bf16 "
          f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}", flush=True)
    if args.what in ("data-share", "all"):
        bench_data_share(raw, args.steps, args.reps)
    if args.what in ("precision", "all"):
        bench_precision(raw, args.steps, args.reps)
    if args.what in ("compile", "all"):
        bench_compile(raw, args.steps, args.reps)
    if args.what in ("accuracy", "all"):
        bench_accuracy(raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
