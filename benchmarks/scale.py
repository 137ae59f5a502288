"""Driver cost as a study grows (issue 13): per-trial overhead, memory, disk, load() and report time.

Four parts, each printed as a function of N:

1. `run`: real but tiny trials (synthetic 4x4 images, 1 epoch of 16 images, `--concurrent` at a
   time, 2 by default) through the whole driver (local Ray, Tune, journal, compaction) at each N.
   Per run: wall time, the sum of the trials' own wall_time_s, the driver's overhead per trial
   ((wall - trials / concurrent) / N), the
   driver process's CPU seconds per trial and peak RSS, the results directory's size and the part
   of it that is Ray Tune's experiment state (`ray/`), and the time of `load()` and of
   `write_report()` on the result. Each N runs in its own process, so its peak RSS is its own.
   `--wave K` sets `resources.trials_per_wave` (trials per Tune run; default: the study's default).
2. `records`: the results layout alone at larger N: N realistic entries appended through
   `StudyDir.record` (the driver's per-trial write), timed per append at the start and at the end
   (O(1) means equal), plus compaction, `load()` and `write_report()` times.
3. `dirs`: N trial folders (each with a 1 KB config.json) in one directory, as results/<study>/trials/
   is today, against the same N sharded into 256 subdirectories by id prefix, interleaved round by
   round: time to create them, to list them all, and to open 1,000 of them by name.
4. `memory`: one `run` with the driver's memory sampled when the journal reaches each of `--marks`
   trials: RSS, what glibc malloc holds, what Python holds (tracemalloc, with `--frames` > 0),
   live objects (Tune `Trial`s, `ObjectRef`s), and the object types (and with tracemalloc the
   allocation sites) that grew most between the first and the last mark.

    python benchmarks/scale.py run --sizes 100 1000           # minutes; 10000 takes hours here
    python benchmarks/scale.py run --sizes 1000 --wave 250   # four Tune runs of 250 trials
    python benchmarks/scale.py records --sizes 1000 10000 100000
    python benchmarks/scale.py dirs --sizes 10000 100000 --rounds 3
    python benchmarks/scale.py memory --sizes 1000 --wave 100 --concurrent 1 --marks 50 150 550 950
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


def tiny_study(folder: Path, n: int, wave: int | None = None, concurrent: int = 2) -> Path:
    """The smoke study shrunk to the cheapest real trial, with n seeds of one pattern."""
    data = yaml.safe_load((REPO / "studies" / "smoke.yaml").read_text())
    data.update(name=f"scale-{n}", output=str(folder / "results"))
    data["data"].update(val_size=8, synthetic={"train": 24, "test": 8, "size": 4, "channels": 1, "classes": 2})
    data["arch"].update(depth=7, growth=2, classes=2, in_channels=1)
    data["train"].update(epochs=1, batch_size=16, eval_batch_size=16, threads=1)
    data["search"] = {"kind": "grid", "seeds": n, "variants": [{"pattern": "dense"}]}
    data["resources"] = {"cpu": 1, "max_concurrent": concurrent}
    if wave:
        data["resources"]["trials_per_wave"] = wave
    path = folder / f"scale-{n}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_size(n: int, wave: int | None = None, concurrent: int = 2) -> dict:
    from connectome.analysis import load, write_report
    from connectome.orchestration.driver import run_study
    from connectome.study import load_study

    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        study = load_study(tiny_study(Path(tmp), n, wave, concurrent))
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
    return dict(n=n, wall=wall, trials=trials, overhead=(wall - trials / concurrent) / n, driver_cpu=driver_cpu / n,
                rss_mb=cpu1.ru_maxrss / 1024, size_mb=size / 2**20, tune_mb=tune_size / 2**20, load=t_load,
                report=t_report)


def run_in_child(n: int, wave: int | None, concurrent: int) -> dict:
    """run_size(n) in a fresh Python process: its peak RSS is this size's alone."""
    cmd = [sys.executable, __file__, "run-one", "--sizes", str(n), "--concurrent", str(concurrent)]
    cmd += ["--wave", str(wave)] if wave else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set now (VmRSS, or its part RssAnon / RssFile / RssShmem), MB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def type_counts() -> dict[str, int]:
    """Live objects tracked by the garbage collector, by type name."""
    import collections
    import gc

    gc.collect()
    return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def malloc_in_use_mb() -> float:
    """Bytes glibc malloc has handed out and not got back (mallinfo2: uordblks + hblkhd), MB."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20


def memory_size(n: int, marks: list[int], top: int, concurrent: int, wave: int | None, frames: int) -> None:
    """Run n tiny trials; at each mark (trials recorded) print RSS, malloc'd, Python-traced memory; top growth."""
    import threading
    import tracemalloc

    from connectome.orchestration.driver import run_study
    from connectome.store.layout import StudyDir
    from connectome.study import load_study

    marks = sorted(marks or {max(1, n // 5), max(2, n * 19 // 20)})
    if frames:  # tracemalloc slows the driver several times; only Python's allocations are traced
        tracemalloc.start(frames)
    with tempfile.TemporaryDirectory(prefix="scale-mem-") as tmp:
        study = load_study(tiny_study(Path(tmp), n, wave, concurrent))
        journal = StudyDir(Path(tmp) / "results" / study.name).journal
        seen: dict[int, tuple] = {}

        def watch() -> None:
            while len(seen) < len(marks):
                done = sum(1 for _ in open(journal, "rb")) if journal.exists() else 0
                for mark in marks:
                    if done >= mark and mark not in seen:
                        types = type_counts()
                        seen[mark] = (done, rss_mb(), malloc_in_use_mb(), tracemalloc.get_traced_memory()[0] / 2**20,
                                      tracemalloc.take_snapshot() if frames else None, types,
                                      [rss_mb(f) for f in ("RssAnon", "RssFile", "RssShmem")])
                time.sleep(0.2)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        run_study(study, console=Console(file=io.StringIO()), report=False)
        thread.join(timeout=5)
    print("| trials recorded | driver RSS (MB) | of which anonymous / file / shared (MB) | malloc in use (MB) "
          "| Python, traced (MB) | objects (k) | Tune Trial objects | ObjectRefs |")
    print("|---|---|---|---|---|---|---|---|")
    for mark in marks:
        done, rss, malloced, traced, _, types, parts = seen[mark]
        print(f"| {done} | {rss:.1f} | {' / '.join(f'{p:.1f}' for p in parts)} | {malloced:.1f} | {traced:.1f} "
              f"| {sum(types.values()) / 1e3:.0f} | {types['ray.tune.experiment.trial.Trial']} | {types['ray.ObjectRef']} |")
    (d0, rss0, mal0, traced0, snap0, types0, _), (d1, rss1, mal1, traced1, snap1, types1, _) = (seen[marks[0]],
                                                                                              seen[marks[-1]])
    trials = d1 - d0
    print(f"per trial, {d0} -> {d1}: RSS {(rss1 - rss0) / trials * 1e3:.1f} KB, malloc {(mal1 - mal0) / trials * 1e3:.1f} KB, "
          f"Python (traced) {(traced1 - traced0) / trials * 1e3:.1f} KB")
    if frames:
        print("top growth by allocation site (KB/trial, blocks/trial):")
        for stat in snap1.compare_to(snap0, "traceback")[:top]:
            print(f"  {stat.size_diff / trials / 1e3:8.2f} KB {stat.count_diff / trials:8.2f}  "
                  + " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[:8]))
    print("top growth by object type (objects/trial):")
    grown = sorted(((types1[k] - types0.get(k, 0), k) for k in types1), reverse=True)[:top]
    for count, name in grown:
        print(f"  {count / trials:8.2f}  {name}")


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
    parser.add_argument("part", choices=("run", "records", "dirs", "run-one", "memory"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--wave", "--batch", type=int, default=None, help="resources.trials_per_wave of the run part")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the dirs part")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at once in the run and memory parts")
    parser.add_argument("--top", type=int, default=25, help="rows of the memory part's tables")
    parser.add_argument("--frames", type=int, default=0, help="memory part: tracemalloc frames (0: off)")
    parser.add_argument("--marks", type=int, nargs="*", default=[], help="memory part: trial counts to sample at")
    args = parser.parse_args()
    if args.part == "run-one":
        print(json.dumps(run_size(args.sizes[0], args.wave, args.concurrent)))
        return
    print(f"load average before: {loadavg()}")
    if args.part == "memory":
        memory_size(args.sizes[0], args.marks, args.top, args.concurrent, args.wave, args.frames)
    elif args.part == "dirs":
        dirs_table(args.sizes, args.rounds)
    elif args.part == "run":
        print("| N | wall (s) | sum trial wall (s) | overhead / trial (s) | driver CPU / trial (s) | driver peak RSS (MB) "
              "| results dir (MB) | of which Tune state (MB) | load() (s) | report (s) | load average after |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for n in args.sizes:
            r = run_in_child(n, args.wave, args.concurrent)
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
