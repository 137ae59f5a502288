"""Optuna searches through Ray Tune, with constraints checked before training.

Candidates that break the constraints (or do not make a valid network) are told to Optuna as
failed with a `rejected` note and replaced at once, so they never reach a worker. The Optuna
study itself is kept in results/<study>/optuna.db (see connectome/orchestration/storage.py).
"""
from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from connectome.errors import ConfigError, ConnectomeError
from connectome.store.layout import StudyDir, write_trial_config
from connectome.study.dedup import Deduplicator
from connectome.orchestration.scheduler import FIDELITY, is_epoch_report
from connectome.study.schema import VALIDATION_METRICS, Study
from connectome.orchestration.storage import make_storage, requeue_interrupted
from connectome.study.space import make_sampler
from connectome.study.trials import make_trial

# Consecutive rejected candidates after which the search gives up (the constraints are too tight).
MAX_REJECTIONS = 200


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch whose suggestions are resolved into trials and checked against constraints."""

    def __init__(self, study: Study, sd: StudyDir, **kwargs: Any):
        self.study, self.sd = study, sd
        # Dedup hook (connectome/study/dedup.py), seeded with the trials planned before a resume.
        self.dedup = Deduplicator.from_trial_files(sd.trials.glob("*/config.json"))
        super().__init__(**kwargs)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        for _ in range(MAX_REJECTIONS):
            params = super().suggest(trial_id)
            if params is None:
                return None
            assignment = dict(self._ot_trials[trial_id].params)
            try:
                trial = make_trial(self.study, assignment, self.study.search.seed)
                reason = trial.rejected
                # Dedup hook: an isomorphic graph with the same training is skipped like a rejection.
                original = None if reason else self.dedup.duplicate_of(trial.trial_id, trial.config)
                if original is not None:
                    reason = f"duplicate_of {original}"
                    self._ot_trials[trial_id].set_user_attr("duplicate_of", original)
            except ConnectomeError as err:
                reason = str(err)
            ot_trial = self._ot_trials[trial_id]
            if reason is None:
                ot_trial.set_user_attr("trial_id", trial.trial_id)
                write_trial_config(self.sd.trial(trial.trial_id), trial.config.model_dump(mode="json"),
                                   study=self.study.name, assignment=trial.assignment)
                return {"trial_id": trial.trial_id, "trial_config": trial.config.model_dump_json()}
            ot_trial.set_user_attr("rejected", reason)
            self._ot_study.tell(self._ot_trials.pop(trial_id), state=TrialState.FAIL)
        raise ConfigError(f"{self.study.source}: {MAX_REJECTIONS} candidates in a row broke the constraints "
                          f"({reason}); loosen `constraints` or narrow the search space")

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Per-epoch results are not the objectives (and no pruner uses them)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not error and (is_epoch_report(result) or (result or {}).get("stopped_early") is True):
            self._prune(trial_id, result)  # stopped now, or a repeat of a trial stopped before
            return
        values = [(result or {}).get(m) for m in _as_list(self.metric)]
        if any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in values):
            # failed or diverged: Optuna cannot rank it, so it is a failed Optuna trial
            if trial_id in self._ot_trials and trial_id not in self._completed_trials:
                self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.FAIL)
                self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


    def _prune(self, trial_id: str, result: dict) -> None:
        """A trial a scheduler stopped is a pruned Optuna trial, with its last validation accuracy."""
        if trial_id not in self._ot_trials or trial_id in self._completed_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        epoch = is_epoch_report(result)
        value = result.get("val_acc" if epoch else "best_val_acc")
        step = result.get(FIDELITY if epoch else "epochs_completed")
        # an intermediate value ranks the pruned trial (TPE uses it) when the objective is a validation accuracy
        if self.metric in VALIDATION_METRICS and isinstance(value, float) and math.isfinite(value) and step:
            ot_trial.report(value, step=int(step))
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)


def _as_list(metric: str | list[str]) -> list[str]:
    return metric if isinstance(metric, list) else [metric]


def make_searcher(study: Study, sd: StudyDir) -> ConstrainedOptunaSearch:
    """The Ray Tune searcher of an optuna study, on the persistent storage."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(sd, study.search.storage)
    requeue_interrupted(storage, study.name)
    objectives = study.search.objectives
    metric = [o.metric for o in objectives]
    mode = [o.mode for o in objectives]
    return ConstrainedOptunaSearch(
        study, sd,
        space={key: spec.distribution() for key, spec in study.space.items()},
        metric=metric if len(metric) > 1 else metric[0],
        mode=mode if len(mode) > 1 else mode[0],
        sampler=make_sampler(study),
        study_name=study.name,
        storage=storage,
    )
