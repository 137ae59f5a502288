"""Driver cost as a study grows (issue 13): per-trial overhead, memory, disk, load() and report time.

Two parts, both printed as a function of N:

1. `run`: real but tiny trials (synthetic 4x4 images, 1 epoch of 16 images, 2 at a time) through
   the whole driver (local Ray, Tune, journal, compaction) at each N. Per run: wall time, the sum
   of the trials' own wall_time_s, the driver's overhead per trial ((wall - trials/2) / N), the
   driver process's CPU seconds per trial and peak RSS, the results directory's size and the part
   of it that is Ray Tune's experiment state (`ray/`), and the time of `load()` and of
   `write_report()` on the result. Each N runs in its own process, so its peak RSS is its own.
   `--batch K` sets `resources.trials_per_batch` (trials per Tune run; default: the study's default).
2. `records`: the results layout alone at larger N: N realistic entries appended through
   `StudyDir.record` (the driver's per-trial write), timed per append at the start and at the end
   (O(1) means equal), plus compaction, `load()` and `write_report()` times.
3. `dirs`: N trial folders (each with a 1 KB config.json) in one directory, as results/<study>/trials/
   is today, against the same N sharded into 256 subdirectories by id prefix, interleaved round by
   round: time to create them, to list them all, and to open 1,000 of them by name.

    python benchmarks/scale.py run --sizes 100 1000           # minutes; 10000 takes hours here
    python benchmarks/scale.py run --sizes 1000 --batch 250   # four Tune runs of 250 trials
    python benchmarks/scale.py records --sizes 1000 10000 100000
    python benchmarks/scale.py dirs --sizes 10000 100000 --rounds 3
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

REPO = Path(__file__).resolve().parents[1]


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def loadavg() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def tiny_study(folder: Path, n: int, batch: int | None = None) -> Path:
    """The smoke study shrunk to the cheapest real trial, with n seeds of one pattern."""
    data = yaml.safe_load((REPO / "studies" / "smoke.yaml").read_text())
    data.update(name=f"scale-{n}", output=str(folder / "results"))
    data["data"].update(val_size=8, synthetic={"train": 24, "test": 8, "size": 4, "channels": 1, "classes": 2})
    data["arch"].update(depth=7, growth=2, classes=2, in_channels=1)
    data["train"].update(epochs=1, batch_size=16, eval_batch_size=16, threads=1)
    data["search"] = {"kind": "grid", "seeds": n, "variants": [{"pattern": "dense"}]}
    data["resources"] = {"cpu": 1, "max_concurrent": 2}
    if batch:
        data["resources"]["trials_per_batch"] = batch
    path = folder / f"scale-{n}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_size(n: int, batch: int | None = None) -> dict:
    from connectome.analysis import load, write_report
    from connectome.orchestration.driver import run_study
    from connectome.study import load_study

    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        study = load_study(tiny_study(Path(tmp), n, batch))
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        frame, wall = timed(lambda: run_study(study, console=Console(file=io.StringIO()), report=False))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        root = Path(tmp) / "results" / study.name
        _, t_load = timed(load, root)
        _, t_report = timed(write_report, root)
        size, tune_size = dir_size(root), dir_size(root / "ray")
    assert len(frame) == n and set(frame["status"]) == {"completed"}, frame["status"].value_counts()
    trials = float(frame["wall_time_s"].sum())
    driver_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return dict(n=n, wall=wall, trials=trials, overhead=(wall - trials / 2) / n, driver_cpu=driver_cpu / n,
                rss_mb=cpu1.ru_maxrss / 1024, size_mb=size / 2**20, tune_mb=tune_size / 2**20, load=t_load,
                report=t_report)


def run_in_child(n: int, batch: int | None) -> dict:
    """run_size(n) in a fresh Python process: its peak RSS is this size's alone."""
    cmd = [sys.executable, __file__, "run-one", "--sizes", str(n)] + (["--batch", str(batch)] if batch else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def fake_entry(i: int) -> dict:
    """A realistic journal entry: a full flat row (about 90 columns) and 5 epochs."""
    row = {"trial_id": f"dense-{i:010x}", "study": "records", "seed": i, "status": "completed", "error": None,
           "attempts": 1, "pattern": ["dense", "partial", "residual", "plain"][i % 4], "growth": 4 + i % 3,
           "depth": 40, "m": None}
    row.update({f"train.k{j}": j * 0.5 for j in range(30)})
    row.update({f"data.k{j}": f"v{j}" for j in range(10)})
    row.update(params=10_000 + i % 977, flops=1_000_000 + i, test_acc=0.5 + (i % 100) / 1000,
               test_error=0.5 - (i % 100) / 1000, best_val_acc=0.5, wall_time_s=1.0, train_time_s=0.9,
               graph_hash=f"{i:016x}", torch_version="2.x", hostname="node-1", device="cpu")
    epochs = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5, "lr": 0.1,
               "seconds": 0.1, "images_per_s": 1000.0} for e in range(1, 6)]
    return {"row": row, "epochs": epochs}


def records_size(n: int) -> dict:
    from connectome.analysis import load, write_report
    from connectome.store.layout import StudyDir

    with tempfile.TemporaryDirectory(prefix="scale-records-") as tmp:
        sd = StudyDir(Path(tmp) / "records")
        sd.write_plan([f"dense-{i:010x}" for i in range(n)])
        sd.stamp(study="records")
        appends, compacting = [], 0.0
        for i in range(n):
            entry = fake_entry(i)
            t0 = time.perf_counter()
            sd.record(entry)
            if sd.compaction_due():
                _, t = timed(sd.compact)
                compacting += t
            appends.append(time.perf_counter() - t0)
        _, t_final = timed(sd.compact)
        _, t_load = timed(load, sd.root)
        _, t_report = timed(write_report, sd.root)
        size = dir_size(sd.root)
    k = max(1, n // 10)
    return dict(n=n, first=sum(appends[:k]) / k * 1e3, last=sum(appends[-k:]) / k * 1e3,
                per_trial=(sum(appends) + t_final) / n * 1e3, compacting=compacting + t_final,
                load=t_load, report=t_report, size_mb=size / 2**20)


def folder_of(root: Path, trial_id: str, sharded: bool) -> Path:
    return root / trial_id[-2:] / trial_id if sharded else root / trial_id


def dirs_round(n: int, sharded: bool) -> dict:
    """Create n trial folders (flat or sharded), list them all, open 1,000 by name; seconds each."""
    import os
    import random
    import shutil

    ids = [f"dense-{i * 2654435761 % 2**40:010x}" for i in range(n)]
    payload = b"x" * 1024
    with tempfile.TemporaryDirectory(prefix="scale-dirs-") as tmp:
        root = Path(tmp) / "trials"
        root.mkdir()
        t0 = time.perf_counter()
        for trial_id in ids:
            folder = folder_of(root, trial_id, sharded)
            folder.mkdir(parents=sharded)
            (folder / "config.json").write_bytes(payload)
        t_create = time.perf_counter() - t0
        os.sync()
        t0 = time.perf_counter()
        found = ([e.name for d in os.scandir(root) for e in os.scandir(d.path)] if sharded
                 else [e.name for e in os.scandir(root)])
        t_list = time.perf_counter() - t0
        assert len(found) == n
        picks = random.Random(0).sample(ids, min(1000, n))
        t0 = time.perf_counter()
        for trial_id in picks:
            (folder_of(root, trial_id, sharded) / "config.json").read_bytes()
        t_open = time.perf_counter() - t0
        shutil.rmtree(root)
    return dict(create=t_create, list=t_list, open_ms=t_open / len(picks) * 1e3)


def dirs_table(sizes: list[int], rounds: int) -> None:
    """Flat against sharded trial folders, interleaved round by round; median and range per cell."""
    import statistics

    print("| N | layout | create (s) | list all (s) | open one by name (ms) | rounds (create s, each) |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(rounds):
            for sharded in (False, True):
                runs[sharded].append(dirs_round(n, sharded))
        for sharded, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            each = ", ".join(f"{r['create']:.1f}" for r in rs)
            print(f"| {n} | {'256 shards' if sharded else 'one directory'} | {med['create']:.2f} | "
                  f"{med['list']:.3f} | {med['open_ms']:.3f} | {each} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("run", "records", "dirs", "run-one"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--batch", type=int, default=None, help="resources.trials_per_batch of the run part")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the dirs part")
    args = parser.parse_args()
    if args.part == "run-one":
        print(json.dumps(run_size(args.sizes[0], args.batch)))
        return
    print(f"load average before: {loadavg()}")
    if args.part == "dirs":
        dirs_table(args.sizes, args.rounds)
    elif args.part == "run":
        print("| N | wall (s) | sum trial wall (s) | overhead / trial (s) | driver CPU / trial (s) | driver peak RSS (MB) "
              "| results dir (MB) | of which Tune state (MB) | load() (s) | report (s) | load average after |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for n in args.sizes:
            r = run_in_child(n, args.batch)
            print(f"| {n} | {r['wall']:.1f} | {r['trials']:.1f} | {r['overhead']:.3f} | {r['driver_cpu']:.3f} | "
                  f"{r['rss_mb']:.0f} | {r['size_mb']:.1f} | {r['tune_mb']:.2f} | {r['load']:.2f} | "
                  f"{r['report']:.1f} | {loadavg()} |", flush=True)
    else:
        print("| N | append, first 10% (ms) | append, last 10% (ms) | recording per trial incl. compaction (ms) "
              "| compaction total (s) | load() (s) | report (s) | results dir (MB) |")
        print("|---|---|---|---|---|---|---|---|")
        for n in args.sizes:
            r = records_size(n)
            print(f"| {n} | {r['first']:.2f} | {r['last']:.2f} | {r['per_trial']:.2f} | {r['compacting']:.1f} | "
                  f"{r['load']:.2f} | {r['report']:.1f} | {r['size_mb']:.1f} |", flush=True)
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
