"""Duplicate trials: the same architecture up to renumbering, trained the same way, runs once.

Two trials are duplicates when their planned specs are isomorphic (canonical hash confirmed by
the exact check in `connectome.canonical.CanonicalIndex`) and their training is identical: data,
training settings (resource keys excluded), seed, and the raw `dropout` option (the plan decides
None from the data, so None and 0.0 are kept apart): `PlannedTrial.train_hash` and the seed.
Replicates with other seeds are not duplicates. The first trial seen is the original; later ones name it in `duplicate_of`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Iterable

from connectome.canonical import CanonicalIndex
from connectome.training.config import TrialConfig
from connectome.training.plan import PlannedTrial, plan_trial
from connectome.training.plan import training_key as training_key  # re-exported: the plan owns it


class Deduplicator:
    """Remembers (canonical key, training key) -> first trial id.

    Isomorphic specs agree on parameters and multiply-adds, so a trial's canonical key (a
    Weisfeiler-Lehman hash: seconds for a 1,000-layer network) is computed only once another
    planned trial shares its training, seed and sizes.
    """

    def __init__(self) -> None:
        self._index = CanonicalIndex()
        self._first: dict[tuple, str] = {}
        self._alone: dict[tuple, tuple[str, PlannedTrial]] = {}  # sizes key -> the one trial with it, unhashed
        self._hashed: set[tuple] = set()  # sizes keys of several trials: their canonical keys are in _first
        self._ids: set[str] = set()

    def seen(self, trial_id: str) -> bool:
        """Whether this trial id was planned before (the same configuration and seed, asked again)."""
        return trial_id in self._ids

    def duplicate_of(self, trial_id: str, plan: PlannedTrial) -> str | None:
        """The original this trial repeats, or None (then it becomes the original of its class)."""
        sizes = (plan.train_hash, plan.config.seed, plan.params, plan.flops)
        if sizes not in self._hashed:
            if sizes not in self._alone:
                self._alone[sizes] = (trial_id, plan)
                self._ids.add(trial_id)
                return None
            first_id, first_plan = self._alone.pop(sizes)
            self._hashed.add(sizes)
            self._first[(self._index.key(first_plan.spec), sizes)] = first_id
        original = self._first.setdefault((self._index.key(plan.spec), sizes), trial_id)
        self._ids.add(original)
        return None if original == trial_id else original

    @classmethod
    def from_trial_files(cls, paths: Iterable[Path]) -> Deduplicator:
        """Seeded with trials planned before (files holding {"trial_id", "config"}), in name order."""
        dedup = cls()
        for path in sorted(paths):
            data = json.loads(Path(path).read_text())
            dedup.duplicate_of(data["trial_id"], plan_trial(TrialConfig.model_validate(data["config"])))
        return dedup


def mark_duplicates(trials: list) -> list:
    """Trials (study.trials.Trial) with duplicates rejected and `duplicate_of` set; order kept."""
    dedup = Deduplicator()
    out = []
    for trial in trials:
        original = None if trial.rejected else dedup.duplicate_of(trial.trial_id, trial.plan)
        if original is not None:
            trial = dataclasses.replace(trial, duplicate_of=original,
                                        rejected=f"duplicate_of {original} (isomorphic graph, same training)")
        out.append(trial)
    return out
