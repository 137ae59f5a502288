"""Cost of batch progress (issue 11): training passes with and without the worker's on_batch hook.

The hook is connectome.orchestration.batch_progress.BatchReporter, as a Ray worker runs it: called
after every step, writing the trial's progress file at most once a second. Each round trains
one epoch of the same trial twice, plain and hooked (order alternating), with the trainer's own
training pass, and prints the CPU-time ratio hooked / plain; the summary gives the median and
the range over rounds. A small network on small images makes steps short, so the per-step cost
of the hook weighs as much as it can. On a loaded machine the rounds' spread hides a cost this
small, so the hook is also timed alone: its mean cost per call (as throttled in training) and
per file write, set against the measured time of a step.

    python benchmarks/batch_progress.py --rounds 8
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from connectome.orchestration.batch_progress import BatchReporter, progress_file
from connectome.training import make_trial_config
from connectome.training.trainer import _train_pass, setup_trial

CONFIG = {
    "arch": {"depth": 10, "growth": 12},
    "data": {"name": "synthetic", "synthetic": {"train": 4096, "test": 64, "size": 16, "channels": 3, "classes": 10},
             "val_size": 0},
    "train": {"epochs": 1, "batch_size": 32, "threads": 1, "precision": "fp32", "compile": False},
    "seed": 0,
}


def one_epoch(trial, epoch: int, on_batch) -> float:
    """CPU seconds of one training pass."""
    t0 = time.process_time()
    _train_pass(trial, epoch, on_batch)
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    trial = setup_trial(make_trial_config(CONFIG))
    steps = -(-len(trial.data.train_y) // trial.cfg.train.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        reporter = BatchReporter(progress_file(Path(tmp)), epochs=1)
        one_epoch(trial, 0, None)  # warm-up: allocator, kernels
        ratios, plain = [], []
        for r in range(args.rounds):
            times = {}
            for name in (("plain", "hooked") if r % 2 == 0 else ("hooked", "plain")):
                times[name] = one_epoch(trial, r + 1, reporter if name == "hooked" else None)
            ratios.append(times["hooked"] / times["plain"])
            plain.append(times["plain"])
            print(f"round {r}: plain {times['plain']:.3f} s, hooked {times['hooked']:.3f} s "
                  f"({steps} steps), ratio {ratios[-1]:.4f}", flush=True)
    print(f"hooked / plain CPU time: median {statistics.median(ratios):.4f}, "
          f"range {min(ratios):.4f}-{max(ratios):.4f} over {len(ratios)} rounds")
    step_s = statistics.median(plain) / steps
    per_call, per_write = hook_cost()
    print(f"the hook alone: {per_call * 1e6:.2f} us per call, {per_write * 1e6:.0f} us per write (at most 1/s); "
          f"a step here {step_s * 1e3:.1f} ms: {per_call / step_s:.5%} of a step, plus {per_write:.5%} of each second")
    return 0


def hook_cost(calls: int = 200_000) -> tuple[float, float]:
    """Mean CPU seconds per hook call (real clock: throttled like in training) and per progress-file write."""
    with tempfile.TemporaryDirectory() as tmp:
        reporter = BatchReporter(progress_file(Path(tmp)), epochs=1)
        t0 = time.process_time()
        for i in range(calls):
            reporter(1, i + 1, calls, 32 * (i + 1))
        per_call = (time.process_time() - t0) / calls
        writer = BatchReporter(progress_file(Path(tmp)), epochs=1, interval=0.0)
        writer(1, 1, 1000, 32)
        t0 = time.process_time()
        for i in range(1000):
            writer(1, i + 2, 1000, 32 * (i + 2))
        per_write = (time.process_time() - t0) / 1000
    return per_call, per_write


if __name__ == "__main__":
    raise SystemExit(main())
