"""What pre-screening by a zero-cost proxy saves and loses, replayed on a finished study's records (issue 12).

For each proxy (and `params`) and keep fraction, the rule of `search.prescreen` (connectome/study/
prescreen.py) is applied to the proxy columns the study recorded at initialisation: the kept
configurations' share of the recorded training time is what the screen spends, and the winner chosen
on validation accuracy among the kept ones is compared with the winner among all (its validation
rank, 1 = the overall winner was kept, and both winners' test accuracy). `random` is the same
keep fraction drawn uniformly at random (mean over 2,000 draws): the baseline a proxy has to beat.
With --overhead N the screen's own cost is measured on N trials of the study (data loading, model
set-up and the proxies on CPU, as the driver does it) against their recorded training time.

    python benchmarks/prescreen.py RESULTS_DIR [--keep 0.25 0.5 0.75] [--overhead 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from connectome.proxies import PREFIX, PROXIES
from connectome.study.prescreen import configuration_means, keep_count, outcome, proxy_at_init, simulate

SELECT, REPORT, COST = "best_val_acc", "test_acc", "train_time_s"
RANDOM_DRAWS = 2000


def read_records(results_dir: Path) -> pd.DataFrame:
    """Completed trials of a results directory (journal/parquet, else each trial folder's record)."""
    from connectome.analysis import load

    try:
        completed = load(results_dir).completed()
    except Exception:  # noqa: BLE001 - an older layout: read the trial folders below
        completed = pd.DataFrame()
    if {SELECT, REPORT, COST} <= set(completed.columns):
        return completed
    rows = []
    for folder in sorted((results_dir / "trials").iterdir()):
        for name in ("result.json", "record.json"):
            if (folder / name).is_file():
                data = json.loads((folder / name).read_text())
                rows.append(data.get("row", data))
                break
    frame = pd.DataFrame(rows)
    return frame[frame["status"] == "completed"].reset_index(drop=True)


def random_baseline(records: pd.DataFrame, keep: float, seed: int = 0) -> dict[str, float]:
    """The keep fraction drawn uniformly: mean cost share, winner's rank and test metric over many draws."""
    rng = np.random.default_rng(seed)
    configs = configuration_means(records, [SELECT, REPORT, COST])
    k = keep_count(len(configs), keep)
    runs = []
    for _ in range(RANDOM_DRAWS):
        kept = np.zeros(len(configs), bool)
        kept[rng.choice(len(configs), k, replace=False)] = True
        runs.append(outcome(configs, kept, SELECT, REPORT, COST))
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}


def overhead(results_dir: Path, records: pd.DataFrame, n: int) -> list[tuple[str, float, float]]:
    """(trial, screen seconds, recorded training seconds) for the first n trials, timed as the driver screens."""
    from connectome.store.layout import StudyDir, read_trial_config
    from connectome.study.trials import Trial
    from connectome.training import TrialConfig

    out = []
    for row in records.head(n).itertuples():
        saved = read_trial_config(StudyDir(results_dir).trial(row.trial_id))
        saved = saved["config"] if saved else json.loads((results_dir / "trials" / row.trial_id / "config.json").read_text())
        trial = Trial(row.trial_id, TrialConfig.model_validate(saved), params=int(row.params))
        start = time.perf_counter()
        proxy_at_init(trial, "synflow")  # computes every proxy once: the cost is the same whichever is used
        out.append((row.trial_id, time.perf_counter() - start, float(getattr(row, COST))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--keep", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--overhead", type=int, default=0, help="measure the screen's cost on this many trials")
    args = parser.parse_args()
    records = read_records(args.results)
    proxies = [p for p in PROXIES if PREFIX + p in records] + ["params"]
    n = simulate(records, "params", 1.0, SELECT, REPORT, COST)["configurations"]
    print(f"{args.results}: {len(records)} completed trials, {n} configurations; winner chosen on {SELECT}, "
          f"{REPORT} reported, cost = recorded {COST}")
    print(f"{'keep':>5} {'proxy':>9} {'kept':>5} {'cost':>6} {'rank of best kept':>18} {REPORT + ' kept/all':>18}")
    for keep in args.keep:
        for proxy in proxies:
            r = simulate(records, proxy, keep, SELECT, REPORT, COST)
            print(f"{keep:5.2f} {proxy:>9} {r['kept']:5d} {r['cost_fraction']:6.2f} {r['rank_of_best_kept']:18d} "
                  f"{r['best_report_kept']:8.4f}/{r['best_report_all']:.4f}")
        r = random_baseline(records, keep)
        print(f"{keep:5.2f} {'random':>9} {keep_count(n, keep):5d} {r['cost_fraction']:6.2f} "
              f"{r['rank_of_best_kept']:18.2f} {r['best_report_kept']:8.4f}/{r['best_report_all']:.4f}  (mean of draws)")
    if args.overhead:
        timed = overhead(args.results, records, args.overhead)
        ratios = [screen / train for _, screen, train in timed]
        for trial_id, screen, train in timed:
            print(f"overhead {trial_id}: screen {screen:.2f}s vs training {train:.1f}s")
        print(f"screen / training time: median {statistics.median(ratios):.4f} (range {min(ratios):.4f}-{max(ratios):.4f})")


if __name__ == "__main__":
    main()
