"""Duplicate trials: the same architecture up to renumbering, trained the same way, runs once.

Two trials are duplicates when their specs are isomorphic (canonical hash confirmed by the
exact check in `connectome.canonical.CanonicalIndex`) and their training is identical: data,
training settings (resource keys excluded), seed, and the raw `dropout` option (the trainer
resolves None from the data, so None and 0.0 are kept apart). Replicates with other seeds are
not duplicates. The first trial seen is the original; later ones name it in `duplicate_of`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Iterable

from connectome.canonical import CanonicalIndex
from connectome.spec import NetworkSpec
from connectome.training.config import TrialConfig
from connectome.training.trainer import RESOURCE_KEYS


def training_key(config: TrialConfig, with_seed: bool = True) -> str:
    """Hash of everything besides the graph that decides what a trial computes (the seed optional)."""
    dumped = config.model_dump(mode="json")
    kept = {section: {k: v for k, v in dumped[section].items() if k not in RESOURCE_KEYS.get(section, ())}
            for section in ("data", "train")}
    kept.update(dropout=config.arch.dropout, **({"seed": config.seed} if with_seed else {}))
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def planned_spec(config: TrialConfig) -> NetworkSpec:
    """The spec the trainer will build: the dataset's channels and classes, dropout resolved as it does."""
    from connectome.builder import build_spec
    from connectome.training.datasets import arch_for_data, dataset_info
    from connectome.training.trainer import NO_AUGMENT_DROPOUT

    arch = arch_for_data(config)[0]
    if arch.dropout is None:  # as trainer.resolve_arch, without loading the data
        augment = config.data.augment
        augment = dataset_info(config.data.name).augment if augment is None else augment
        arch = arch.model_copy(update={"dropout": 0.0 if augment else NO_AUGMENT_DROPOUT})
    return build_spec(arch)


class Deduplicator:
    """Remembers (canonical key, training key) -> first trial id."""

    def __init__(self) -> None:
        self._index = CanonicalIndex()
        self._first: dict[tuple[str, str], str] = {}
        self._ids: set[str] = set()

    def seen(self, trial_id: str) -> bool:
        """Whether this trial id was planned before (the same configuration and seed, asked again)."""
        return trial_id in self._ids

    def duplicate_of(self, trial_id: str, config: TrialConfig, spec: NetworkSpec | None = None) -> str | None:
        """The original this trial repeats, or None (then it becomes the original of its class)."""
        key = (self._index.key(spec or planned_spec(config)), training_key(config))
        original = self._first.setdefault(key, trial_id)
        self._ids.add(original)
        return None if original == trial_id else original

    @classmethod
    def from_trial_files(cls, paths: Iterable[Path]) -> Deduplicator:
        """Seeded with trials planned before (files holding {"trial_id", "config"}), in name order."""
        dedup = cls()
        for path in sorted(paths):
            data = json.loads(Path(path).read_text())
            dedup.duplicate_of(data["trial_id"], TrialConfig.model_validate(data["config"]))
        return dedup


def mark_duplicates(trials: list) -> list:
    """Trials (study.trials.Trial) with duplicates rejected and `duplicate_of` set; order kept."""
    dedup = Deduplicator()
    out = []
    for trial in trials:
        original = None if trial.rejected else dedup.duplicate_of(trial.trial_id, trial.config)
        if original is not None:
            trial = dataclasses.replace(trial, duplicate_of=original,
                                        rejected=f"duplicate_of {original} (isomorphic graph, same training)")
        out.append(trial)
    return out
