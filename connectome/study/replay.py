"""The `replay` backend: answer a study's trials from an exported benchmark table, in zero time.

A trial is answered when the table holds an isomorphic architecture (canonical hash, confirmed by
the exact check against the stored spec) trained with the same training config hash and seed;
otherwise it is `missing`. Grid studies replay every planned trial; Optuna studies run their
sampler in-process (ask/tell), so search strategies can be compared without training.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from connectome.canonical import networks_isomorphic
from connectome.errors import ConfigError
from connectome.spec import NetworkSpec
from connectome.store.layout import StudyDir
from connectome.study.schema import GridSearch, Study
from connectome.study.trials import Trial, expand_grid, make_trial


class ReplayTable:
    """An export table indexed by (canonical hash, training hash, seed) -> final-epoch row."""

    def __init__(self, table: pd.DataFrame) -> None:
        last = table.sort_values("epoch").groupby(["canonical_key", "train_hash", "seed"]).tail(1)
        self._rows: dict[tuple[str, str, int], list[dict]] = {}
        for row in last.to_dict("records"):
            h = str(row["canonical_key"]).split(".")[0]
            self._rows.setdefault((h, row["train_hash"], int(row["seed"])), []).append(row)

    @classmethod
    def read(cls, path: str | Path) -> ReplayTable:
        """From an `export.parquet` file or a results directory holding one."""
        path = Path(path)
        path = StudyDir(path).export_file if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"{path} not found: write it with `connectome export RESULTS_DIR`")
        return cls(pd.read_parquet(path))

    def answer(self, trial: Trial) -> dict[str, Any] | None:
        """The stored row of an isomorphic, identically trained architecture, or None."""
        plan = trial.plan
        for row in self._rows.get((plan.canonical_hash, plan.train_hash, plan.config.seed), []):
            if networks_isomorphic(plan.spec, NetworkSpec.from_json(row["spec"])):
                return row
        return None


def _result(trial: Trial, row: dict | None, **extra: Any) -> dict[str, Any]:
    metrics = {k: row.get(k) for k in ("test_acc", "test_error", "best_val_acc", "params", "trial_id")} if row else {}
    return {"trial_id": trial.trial_id, "replayed_from": metrics.pop("trial_id", None),
            "status": "replayed" if row else "missing", **trial.assignment, "seed": trial.config.seed,
            **metrics, **extra}


def replay_grid(study: Study, table: ReplayTable) -> pd.DataFrame:
    """Every accepted grid trial answered from the table (duplicates answered like their original)."""
    return pd.DataFrame([_result(t, table.answer(t)) for t in expand_grid(study) if not t.rejected or t.duplicate_of])


def replay_optuna(study: Study, table: ReplayTable) -> pd.DataFrame:
    """Run the study's Optuna sampler for n_trials, each told the table's values (missing: failed)."""
    import optuna

    from connectome.study.space import ask_params, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = study.search.objectives
    ot = optuna.create_study(directions=["maximize" if o.mode == "max" else "minimize" for o in objectives],
                             sampler=make_sampler(study))
    rows = []
    for number in range(study.search.n_trials):
        ask = ask_params(ot, study.space)
        trial = make_trial(study, dict(ask.params), study.search.seed)
        row = None if trial.rejected else table.answer(trial)
        values = [row.get(o.metric) if row else None for o in objectives]
        if row is None or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            ot.tell(ask, state=optuna.trial.TrialState.FAIL)
        else:
            ot.tell(ask, values)
        rows.append(_result(trial, row, number=number, rejected=trial.rejected))
    return pd.DataFrame(rows)


def replay_study(study: Study, table: ReplayTable) -> pd.DataFrame:
    """Replay a grid or Optuna study against the table."""
    return replay_grid(study, table) if isinstance(study.search, GridSearch) else replay_optuna(study, table)
