"""Study orchestration overhead (issue 4): study wall time vs the sum of its trials' training time.

One synthetic grid study is run end to end through `connectome.orchestration.driver.run_study` (a private local
Ray started for each run, Ray Tune, durable results) with 1 and then 2 concurrent trials, side by
side in one invocation (order alternates over repetitions). Reported per run:

  wall     whole run_study call: Ray start, planning, trials, parquet, summary (no report)
  train    sum over trials of train_time_s (the trainer's own training-loop time)
  trial    sum over trials of wall_time_s (training + data loading + evaluation, in the worker)
  overhead wall - trial / k: what orchestration adds beyond the trials' own work at k at once
  share    overhead / wall

    python benchmarks/study.py                  # 8 trials x 6 epochs of 2,000 16x16 images, k = 1 and 2
    python benchmarks/study.py --trials-per-pattern 2 --epochs 20 --reps 2
"""
from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

from connectome.study import load_study
from connectome.orchestration.driver import run_study

REPO = Path(__file__).resolve().parents[1]


def study_file(folder: Path, concurrency: int, epochs: int, seeds: int, images: int) -> Path:
    """The smoke study with more images and epochs, four patterns, `seeds` replicates, k at once."""
    data = yaml.safe_load((REPO / "studies" / "smoke.yaml").read_text())
    data.update(name=f"bench-k{concurrency}", output=str(folder / "results"))
    data["data"]["synthetic"].update(train=images, size=16)
    data["train"]["epochs"] = epochs
    data["search"] = {"kind": "grid", "factors": {"pattern": ["dense", "partial", "residual", "plain"]},
                      "seeds": seeds}
    data["resources"] = {"cpu": 1, "max_concurrent": concurrency}
    path = folder / f"bench-k{concurrency}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def measure(concurrency: int, epochs: int, seeds: int, images: int) -> dict:
    """Run one study; wall time and the trials' own times."""
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        study = load_study(study_file(Path(tmp), concurrency, epochs, seeds, images))
        t0 = time.perf_counter()
        frame = run_study(study, console=Console(file=io.StringIO()), report=False)
        wall = time.perf_counter() - t0
    assert set(frame["status"]) == {"completed"}, frame[["trial_id", "status", "error"]]
    trial = float(frame["wall_time_s"].sum())
    overhead = wall - trial / concurrency
    return dict(k=concurrency, n=len(frame), wall=wall, train=float(frame["train_time_s"].sum()),
                trial=trial, overhead=overhead, share=overhead / wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=2000, help="synthetic training images (16x16)")
    parser.add_argument("--trials-per-pattern", dest="seeds", type=int, default=2)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for rep in range(args.reps):
        for k in ((1, 2) if rep % 2 == 0 else (2, 1)):
            r = measure(k, args.epochs, args.seeds, args.images)
            runs[k].append(r)
            print(f"rep {rep} k={k}: {r['n']} trials  wall {r['wall']:.1f}s  train {r['train']:.1f}s  "
                  f"trial {r['trial']:.1f}s  overhead {r['overhead']:.1f}s ({r['share']:.0%})", flush=True)
    med = {k: {key: statistics.median(r[key] for r in rs) for key in ("wall", "train", "trial", "overhead", "share")}
           for k, rs in runs.items()}
    print("\n| concurrent trials | study wall (s) | sum train_time_s | sum trial wall_time_s | overhead (s) | overhead share |")
    print("|---|---|---|---|---|---|")
    for k, m in med.items():
        print(f"| {k} | {m['wall']:.1f} | {m['train']:.1f} | {m['trial']:.1f} | {m['overhead']:.1f} | {m['share']:.0%} |")
    print(f"\nspeed-up of the study from 2 concurrent trials: {med[1]['wall'] / med[2]['wall']:.2f}x; "
          f"per-trial wall time grows {med[2]['trial'] / med[1]['trial']:.2f}x when two share the cores")


if __name__ == "__main__":
    main()
