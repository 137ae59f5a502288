"""Optuna searches through Ray Tune, with constraints checked before training.

Candidates that break the constraints (or do not make a valid network) are told to Optuna as
failed with a `rejected` note and replaced at once, so they never reach a worker; so are
candidates that repeat a planned trial (`duplicate_of`: an isomorphic graph with the same
training, or the same configuration suggested again), told as pruned. The Optuna
study itself is kept in results/<study>/optuna.db (see connectome/store/optuna_storage.py).
"""
from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from connectome.errors import ConfigError, ConnectomeError
from connectome.store.layout import StudyDir, write_trial_config
from connectome.study.dedup import Deduplicator
from connectome.orchestration.scheduler import FIDELITY, is_epoch_report
from connectome.study.schema import VALIDATION_METRICS, Study
from connectome.store.optuna_storage import make_storage, requeue_interrupted
from connectome.study.space import SpaceSampler, is_conditional, make_sampler
from connectome.study.trials import make_trial

# Consecutive rejected candidates after which the search gives up (the constraints are too tight).
MAX_REJECTIONS = 200

log = logging.getLogger(__name__)


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch whose suggestions are resolved into trials and checked against constraints."""

    def __init__(self, study: Study, sd: StudyDir, **kwargs: Any):
        self.study, self.sd = study, sd
        # Dedup hook (connectome/study/dedup.py), seeded with the trials planned before a resume.
        self.dedup = Deduplicator.from_trial_files(sd.trial_configs())
        super().__init__(**kwargs)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        repeats = 0
        for _ in range(MAX_REJECTIONS):
            params = super().suggest(trial_id)
            if params is None:
                return None
            ot_trial = self._ot_trials[trial_id]
            try:
                trial = make_trial(self.study, dict(ot_trial.params), self.study.search.seed)
                reason = trial.rejected or self._duplicate(ot_trial, trial)
            except ConnectomeError as err:
                reason = str(err)
            if reason is None:
                ot_trial.set_user_attr("trial_id", trial.trial_id)
                write_trial_config(self.sd.trial(trial.trial_id), trial.config.model_dump(mode="json"),
                                   study=self.study.name, assignment=trial.assignment, planned=trial.plan.to_json())
                return {"trial_id": trial.trial_id, "trial_config": trial.config.model_dump_json()}
            repeat = reason.startswith("duplicate_of ")
            repeats += repeat
            ot_trial.set_user_attr("rejected", reason)
            # TPE ignores failed trials, so a repeat told FAIL is asked for again and again (a small
            # discrete space stalled after its start-up trials); a pruned one without values ranks
            # below every completed trial, so the sampler looks elsewhere. Neither counts to n_trials.
            state = TrialState.PRUNED if repeat else TrialState.FAIL
            self._ot_study.tell(self._ot_trials.pop(trial_id), state=state)
        if repeats:
            # A small space (e.g. a few categorical choices) runs out: the sampler keeps asking for
            # trials already planned. The search ends with fewer than n_trials distinct trials.
            log.warning("%s: %d candidates in a row were rejected, %d of them repeats of planned trials; "
                        "the search space has no new candidate, so the search ends here",
                        self.study.source, MAX_REJECTIONS, repeats)
            return Searcher.FINISHED
        raise ConfigError(f"{self.study.source}: {MAX_REJECTIONS} candidates in a row broke the constraints "
                          f"({reason}); loosen `constraints` or narrow the search space")

    def _duplicate(self, ot_trial: optuna.Trial, trial) -> str | None:
        """`duplicate_of <id>` if the candidate repeats a planned trial (itself asked again, or an isomorphic one).

        Optuna may suggest a configuration again (in one Tune run, or in a later wave or driver
        run whose fresh searcher reads the history from the storage): it is skipped like an
        isomorphic duplicate, so a trial never runs twice and n_trials counts distinct trials.
        Parameters enqueued again (a failed or interrupted trial, store/optuna_storage.py) are not repeats:
        they resume that trial.
        """
        if self.dedup.seen(trial.trial_id):
            if "fixed_params" in self._ot_study._storage.get_trial_system_attrs(ot_trial._trial_id):
                return None
            original = trial.trial_id
        else:
            original = self.dedup.duplicate_of(trial.trial_id, trial.plan)
        if original is None:
            return None
        ot_trial.set_user_attr("duplicate_of", original)
        return f"duplicate_of {original}"

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
        per_epoch = EPOCH_METRIC.get(self.metric, "val_acc") if isinstance(self.metric, str) else "val_acc"
        value = result.get(per_epoch if epoch else self.metric)
        step = result.get(FIDELITY if epoch else "epochs_completed")
        # an intermediate value ranks the pruned trial (TPE uses it) when the objective is a validation metric
        if self.metric in VALIDATION_METRICS and isinstance(value, float) and math.isfinite(value) and step:
            ot_trial.report(value, step=int(step))
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)


# A validation objective -> the per-epoch metric that tracks it (what a pruned trial reports).
EPOCH_METRIC = {"best_val_acc": "val_acc", "final_val_acc": "val_acc",
                "best_val_bpb": "val_bpb", "final_val_bpb": "val_bpb"}


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
    # A conditional space is sampled define-by-run; a fixed one as a fixed set of distributions.
    space = study.space
    fixed = {key: spec.distribution() for key, spec in space.items()}
    return ConstrainedOptunaSearch(
        study, sd,
        space=SpaceSampler(space) if is_conditional(space) else fixed,
        metric=metric if len(metric) > 1 else metric[0],
        mode=mode if len(mode) > 1 else mode[0],
        sampler=make_sampler(study),
        study_name=study.name,
        storage=storage,
    )
