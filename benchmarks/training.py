"""Training benchmarks (issue 3) on a real dataset: accuracy in a time budget, data share, precision.

Ratios are measured side by side in one run: repetitions alternate (A,B then B,A, so drift
from other jobs on the machine hits both sides alike) and medians are reported.

    python benchmarks/training.py accuracy benchmarks/fashion_small.yaml   # one full trial
    python benchmarks/training.py data-share benchmarks/fashion_small.yaml
    python benchmarks/training.py precision benchmarks/fashion_small.yaml
    python benchmarks/training.py compile benchmarks/fashion_small.yaml   # compile time, break-even
    python benchmarks/training.py all benchmarks/fashion_small.yaml
    python benchmarks/training.py precision benchmarks/fashion_small.yaml --device cuda  # + fp16

On CUDA every timed repetition is synchronised at both ends, so it measures the GPU's work,
not how fast the host queues kernels.

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

from connectome.errors import ConfigError
from connectome.training import make_trial_config, train_trial
from connectome.training.device import check_precision, resolve_device, to_device
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_steps(trial: Trial, steps: int, with_model: bool) -> float:
    """Seconds for `steps` batches: data only (gather, normalise, augment) or the full step."""
    gen = torch.Generator().manual_seed(epoch_seed(trial.cfg.seed, 0))
    n, bs = len(trial.data.train_y), trial.cfg.train.batch_size
    trial.forward.train()
    _sync(trial.device)
    t0 = time.perf_counter()
    # As the trainer does per epoch: indices, crops and flips drawn on the CPU and copied once.
    order = to_device(torch.randint(0, n, (steps * bs,), generator=gen), trial.device)
    draws = trial.data.draw_augment(gen, [bs] * steps)
    for step in range(steps):
        aug = draws[step * bs:(step + 1) * bs] if draws is not None else None
        x, y = trial.data.batch(order[step * bs:(step + 1) * bs], aug)
        if with_model:
            train_step(trial, x, y)
    _sync(trial.device)
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


def precisions_for(device: torch.device) -> tuple[str, ...]:
    """Precisions worth timing on the device: fp16 is GPU-only, bf16 needs native support."""
    names = ["fp32"]
    try:
        check_precision("bf16", device)
        names.append("bf16")
    except ConfigError as err:
        print(f"precision: bf16 not run ({err})")
    if device.type == "cuda":
        names.append("fp16")
    return tuple(names)


def bench_precision(raw: dict, steps: int, reps: int) -> None:
    """Training throughput of each precision against fp32, same model and batches, interleaved."""
    device = resolve_device(raw["train"].get("device", "auto"))
    names = precisions_for(device)
    trials = {p: setup_trial(make_trial_config({**raw, "train": {**raw["train"], "precision": p}}))
              for p in names}
    for t in trials.values():
        _timed_steps(t, 2, with_model=True)
    times: dict[str, list[float]] = {p: [] for p in names}
    for r in range(reps):
        for p in (names if r % 2 == 0 else names[::-1]):
            times[p].append(_timed_steps(trials[p], steps, with_model=True))
    bs = raw["train"].get("batch_size", 64)
    ips = {p: bs * steps / statistics.median(v) for p, v in times.items()}
    rates = "  ".join(f"{p} {ips[p]:.0f} img/s" for p in names)
    ratios = "  ".join(f"{p}/fp32 {ips[p] / ips['fp32']:.2f}x (per-round {_round_ratios(times, p)})"
                       for p in names[1:])
    print(f"precision on {device}: {rates}  {ratios}  (batch {bs}, threads {torch.get_num_threads()})")


def _round_ratios(times: dict[str, list[float]], p: str) -> str:
    """Spread of the per-round speed ratio fp32 time / p time."""
    pairs = [a / b for a, b in zip(times["fp32"], times[p])]
    return f"{min(pairs):.2f}..{max(pairs):.2f}"


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
    parser.add_argument("--device", default=None, help="override train.device (cpu, cuda, auto)")
    args = parser.parse_args(argv)
    overrides = {"threads": args.threads} if args.threads else {}
    if args.device:
        overrides["device"] = args.device
    raw = load(args.config, overrides)
    print(f"config {args.config}  torch {torch.__version__}  device {resolve_device(raw['train'].get('device', 'auto'))}"
          f"  cpu bf16 {torch.ops.mkldnn._is_mkldnn_bf16_supported()}  load average "
          f"{Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
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
    try:
        sys.exit(main())
    except ConfigError as err:
        sys.exit(f"error: {err}")
