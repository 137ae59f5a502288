"""Multi-fidelity search (issue 9, target 5): a full connectivity search vs the same search with ASHA.

Runs studies/connectivity_search.yaml (24 candidates, every one trained its 9 epochs) and
studies/connectivity_search_asha.yaml (the same candidates, ASHA stopping weak ones on per-epoch
validation accuracy), one after the other, through `run_study` (a private local Ray each).
Each search picks the configuration with the best mean validation accuracy (`best_val_acc`)
among its trials that trained to the end. Both picks are then re-run on 3 fresh seeds (1, 2, 3;
the searches used seed 0) with the full budget, and their test accuracy is reported with a 95%
Student-t interval. Printed:

  cost     sum over a search's trials of wall_time_s (setup, training, evaluation in the worker;
           a stopped trial counts up to the epoch it reached)
  cpu      the same sum of cpu_time_s (the trials' CPU seconds): the cost that load from other
           jobs does not inflate, so the ratio holds on a shared machine
  wall     the whole run_study call
  pick     pattern/growth/depth chosen on validation accuracy
  ratio    ASHA cost / full cost, in wall and in CPU time (target <= 1/3)
  within   whether the ASHA pick's mean test accuracy lies in the full pick's 95% interval

Results stay in --out (default results/multifidelity): a second invocation resumes what is missing.

    nice -n 10 python benchmarks/multifidelity.py
    python benchmarks/multifidelity.py --out /tmp/mf --seeds 1 2 3
"""
from __future__ import annotations

import argparse
import io
import math
import time
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console

from connectome.analysis import summarize
from connectome.orchestration.driver import run_study
from connectome.study import load_study

REPO = Path(__file__).resolve().parents[1]
SEARCHES = {"full": REPO / "studies" / "connectivity_search.yaml",
            "asha": REPO / "studies" / "connectivity_search_asha.yaml"}
FACTORS = ["pattern", "growth", "depth"]
SELECTION = "best_val_acc"  # validation: what a search may select on
REPORTED = "test_acc"


def loadavg() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(path: Path, out: Path) -> tuple[pd.DataFrame, float]:
    """Run (or resume) one study with its results under `out`; its trials frame and wall seconds."""
    study = load_study(path, [f"output={out}"])
    resume = (out / study.name / "trials.jsonl").exists() or (out / study.name / "trials").is_dir()
    t0 = time.perf_counter()
    frame = run_study(study, resume=resume, console=Console(file=io.StringIO()), report=False)
    # a resumed study's wall time is only this call's, not the search's: none is reported
    return frame, math.nan if resume else time.perf_counter() - t0


def trained_to_the_end(frame: pd.DataFrame) -> pd.DataFrame:
    """Completed trials that a scheduler did not stop (the ones a search may pick)."""
    stopped = frame.get("stopped_early", pd.Series(False, index=frame.index)).fillna(False).astype(bool)
    return frame[(frame["status"] == "completed") & ~stopped]


def pick(frame: pd.DataFrame) -> dict:
    """The configuration with the best mean validation accuracy over its seeds."""
    means = trained_to_the_end(frame).groupby(FACTORS)[SELECTION].mean()
    return dict(zip(FACTORS, (v.item() if hasattr(v, "item") else v for v in means.idxmax())))


def describe_search(name: str, frame: pd.DataFrame, wall: float) -> dict:
    """Cost, pick and counts of one search; printed as one line."""
    stopped = len(frame) - len(trained_to_the_end(frame))
    chosen = pick(frame)
    best = trained_to_the_end(frame).set_index(FACTORS)[SELECTION].groupby(FACTORS).mean().max()
    info = dict(search=name, trials=len(frame), stopped=stopped, cost=float(frame["wall_time_s"].sum()),
                cpu=float(frame["cpu_time_s"].sum()) if "cpu_time_s" in frame else math.nan,
                epochs=int(frame["epochs_completed"].sum()), wall=wall, pick=chosen, val=float(best))
    print(f"{name:5s} trials {info['trials']} (stopped early {stopped}), epochs trained {info['epochs']}, "
          f"cost {info['cost']:.0f} s ({info['cpu']:.0f} CPU s), wall {wall:.0f} s, pick {_label(chosen)} "
          f"(best_val_acc {best:.4f}); load {loadavg()}", flush=True)
    return info


def rerun_study(picks: list[dict], seeds: list[int], folder: Path) -> Path:
    """The full search's recipe over the picks only, on fresh seeds, every trial to its last epoch."""
    data = yaml.safe_load(SEARCHES["full"].read_text())
    variants = [dict(p) for i, p in enumerate(picks) if p not in picks[:i]]
    data.update(name="connectivity_search_picks",
                search={"kind": "grid", "variants": variants, "seeds": list(seeds)})
    path = folder / "connectivity_search_picks.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy per pick over the fresh seeds: count, mean, 95% t interval."""
    return summarize(frame[frame["status"] == "completed"], by=FACTORS, metric=REPORTED).set_index(FACTORS)


def _label(p: dict) -> str:
    return f"{p['pattern']}/k={p['growth']}/L={p['depth']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "multifidelity")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"load before: {loadavg()}", flush=True)
    info = {name: describe_search(name, *run(path, args.out)) for name, path in SEARCHES.items()}
    picks = [info["full"]["pick"], info["asha"]["pick"]]
    frame, wall = run(rerun_study(picks, args.seeds, args.out), args.out)
    table = test_intervals(frame)
    print(f"re-run of the picks on seeds {args.seeds}: wall {wall:.0f} s; load {loadavg()}")
    for name, p in zip(("full", "asha"), picks):
        row = table.loc[tuple(p[f] for f in FACTORS)]
        print(f"{name:5s} pick {_label(p)}: test acc {row['mean']:.4f} "
              f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}] (n={int(row['count'])})")
    full = table.loc[tuple(picks[0][f] for f in FACTORS)]
    asha = table.loc[tuple(picks[1][f] for f in FACTORS)]
    same = picks[0] == picks[1]
    within = bool(full["ci_low"] <= asha["mean"] <= full["ci_high"])
    ratio = info["asha"]["cost"] / info["full"]["cost"]
    cpu_ratio = info["asha"]["cpu"] / info["full"]["cpu"]
    print(f"ASHA pick within the full pick's 95% interval: {'yes' if within else 'no'}"
          f"{' (the same configuration)' if same else ''}")
    print(f"cost ratio ASHA / full: {ratio:.3f} in trial wall time, {cpu_ratio:.3f} in trial CPU time "
          f"(target <= 0.333); epochs {info['asha']['epochs']} / "
          f"{info['full']['epochs']}; {_wall_ratio(info)}")


def _wall_ratio(info: dict) -> str:
    """The two run_study calls' wall times, compared; a resumed search has none of its own."""
    ratio = info["asha"]["wall"] / info["full"]["wall"]
    return "run wall ratio: none (a search was resumed)" if math.isnan(ratio) else f"run wall ratio {ratio:.3f}"


if __name__ == "__main__":
    main()
