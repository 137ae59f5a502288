"""Pre-screening a grid by a zero-cost proxy: score every candidate at initialisation, train the top fraction.

A candidate is a configuration (trials equal on everything but the seed): its score is the mean
over its seeds of the proxy the trainer records as `proxy.<name>` (same seeded initialisation, same
batch, computed here on CPU), or its parameter count for `proxy: params`. Higher scores are kept,
the convention of the proxies' papers; that direction is fixed here, never chosen after seeing
results. Skipped configurations are not failures: every candidate, kept or skipped, is listed
with its score and rank in `prescreen.csv` beside the results. `simulate` replays the rule on a
finished study's records, which is how benchmarks/prescreen.py says what pre-screening costs.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Callable

import pandas as pd

from connectome.proxies import PREFIX
from connectome.study.trials import Trial

TABLE_COLUMNS = ("trial_id", "configuration", "seed", "params", "proxy", "value", "score", "rank", "status")


def proxy_at_init(trial: Trial, proxy: str) -> float:
    """The proxy the trainer will record for this trial, from its seeded initialisation on CPU."""
    if proxy == "params":
        return float(trial.params)
    import torch

    from connectome.proxies import trial_proxy_columns
    from connectome.training import device as devices
    from connectome.training.trainer import setup_trial

    # Resource keys only: the same planned network, set up on CPU without compiling.
    train = trial.config.train.model_copy(update={"device": "cpu", "compile": False, "proxies": True})
    plan = dataclasses.replace(trial.plan, config=trial.config.model_copy(update={"train": train}))
    cpu, threads = torch.device("cpu"), torch.get_num_threads()
    try:
        with devices.trial_scope(cpu):
            return trial_proxy_columns(setup_trial(plan, cpu))[PREFIX + proxy]
    finally:
        torch.set_num_threads(threads)  # setup_trial sets the trial's threads process-wide


def configuration_key(trial: Trial) -> str:
    """What identifies a candidate across its seeds: the searched values that made it."""
    return json.dumps(trial.assignment, sort_keys=True, default=str)


def keep_count(n: int, keep: float) -> int:
    """Candidates kept out of n: the top `keep` fraction, rounded up, at least one."""
    return max(1, math.ceil(keep * n - 1e-9))


def rank_configurations(scores: pd.Series, keep: float) -> pd.DataFrame:
    """Per configuration (index): score, rank (1 = highest; undefined scores last, ties in plan order), kept."""
    finite = scores.where(scores.map(lambda v: isinstance(v, float) and math.isfinite(v)), -math.inf)
    order = sorted(range(len(finite)), key=lambda i: -finite.iloc[i])  # stable: ties keep plan order
    rank = pd.Series(0, index=scores.index)
    rank.iloc[order] = range(1, len(order) + 1)
    return pd.DataFrame({"score": scores, "rank": rank, "kept": rank <= keep_count(len(scores), keep)})


def screen(trials: list[Trial], proxy: str, keep: float,
           score: Callable[[Trial, str], float] = proxy_at_init) -> tuple[list[Trial], pd.DataFrame]:
    """Trials with the skipped ones marked (`rejected: skipped by prescreen ...`) and the table of every candidate."""
    candidates = [t for t in trials if not t.rejected]
    rows = pd.DataFrame([{"trial_id": t.trial_id, "configuration": configuration_key(t), "seed": t.config.seed,
                          "params": t.params, "proxy": proxy, "value": score(t, proxy)} for t in candidates])
    if rows.empty:
        return trials, pd.DataFrame(columns=[*TABLE_COLUMNS])
    configs = rank_configurations(rows.groupby("configuration", sort=False)["value"].mean(), keep)
    table = rows.join(configs, on="configuration")
    table["status"] = table["kept"].map({True: "kept", False: "skipped"})
    n, kept = len(configs), int(configs["kept"].sum())
    skipped = {r.trial_id: f"skipped by prescreen: {proxy} {r.score:.4g} ranks {r.rank} of {n} configurations, "
                           f"top {kept} kept" for r in table[~table["kept"]].itertuples()}
    marked = [dataclasses.replace(t, rejected=skipped[t.trial_id]) if t.trial_id in skipped else t for t in trials]
    return marked, table[[*TABLE_COLUMNS]]


def simulate(records: pd.DataFrame, proxy: str, keep: float, select: str = "best_val_acc",
             report: str = "test_acc", cost: str = "train_time_s") -> dict[str, float]:
    """The rule replayed on a finished study: what the kept configurations cost and what selection loses.

    Configurations are rows equal on every factor but the seed (means over seeds). The winner is
    chosen on `select` (validation) among all configurations and among the kept ones; returned:
    the fraction of `cost` spent, the rank (on `select`, 1 = best) of the best kept configuration,
    and the `report` (test) metric of both winners.
    """
    column = proxy if proxy == "params" else PREFIX + proxy
    configs = configuration_means(records, [column, select, report, cost])
    kept = rank_configurations(configs[column].astype(float), keep)["kept"]
    return outcome(configs, kept.to_numpy(), select, report, cost)


def configuration_means(records: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean of `columns` per configuration (rows equal on every varying factor but the seed), in record order."""
    from connectome.store.record import factor_columns

    by = factor_columns(records, varying=True) or ["trial_id"]
    keys = [json.dumps(list(values), default=str) for values in records[by].itertuples(index=False)]
    return records.assign(_key=keys).groupby("_key", sort=False)[columns].mean()


def outcome(configs: pd.DataFrame, kept, select: str, report: str, cost: str) -> dict[str, float]:
    """Cost share of the kept configurations, validation rank of the best kept, test metric of both winners."""
    chosen = configs[kept]
    best_all, best_kept = configs[select].idxmax(), chosen[select].idxmax()
    return {"configurations": len(configs), "kept": len(chosen),
            "cost_fraction": float(chosen[cost].sum() / configs[cost].sum()),
            "rank_of_best_kept": int(configs[select].rank(ascending=False, method="min")[best_kept]),
            "best_report_all": float(configs.loc[best_all, report]),
            "best_report_kept": float(configs.loc[best_kept, report])}
