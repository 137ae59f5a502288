"""From a hash back to the architecture: the trials of a results directory whose spec matches.

Hashes are recomputed from each trial's `spec.json`, so directories written before the
canonical hash existed are searched too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from connectome.architecture import ArchConfig
from connectome.errors import ConfigError
from connectome.spec import NetworkSpec
from connectome.store.layout import StudyDir, TrialFiles

# Shortest hash prefix accepted (shorter ones match too much by chance).
MIN_PREFIX = 4


@dataclass(frozen=True)
class SpecMatch:
    """One trial's architecture: its id, resolved arch options and spec."""

    trial_id: str
    arch: ArchConfig
    spec: NetworkSpec


def trial_specs(results_dir: str | Path) -> Iterator[SpecMatch]:
    """Every trial folder with a spec.json, in id order."""
    trials = StudyDir(results_dir).trials
    if not trials.is_dir():
        raise ConfigError(f"{results_dir} is not a results directory (no trials/ folder)")
    for files in sorted((TrialFiles(p) for p in trials.iterdir()), key=lambda f: f.dir):
        if files.spec.is_file():
            spec = NetworkSpec.from_json(files.spec.read_text())
            yield SpecMatch(files.trial_id, _arch(files, spec), spec)


def _arch(files: TrialFiles, spec: NetworkSpec) -> ArchConfig:
    """The trial's arch options with what the trainer resolved from the data (classes, channels, dropout)."""
    config = json.loads(files.config.read_text()) if files.config.is_file() else {}
    resolved = dict(classes=spec.classes, in_channels=spec.in_channels, dropout=spec.dropout)
    return ArchConfig.model_validate({**config.get("arch", {}), **resolved})


def find_specs(results_dir: str | Path, prefix: str) -> list[SpecMatch]:
    """Trials whose graph_hash or canonical_hash starts with `prefix`; ConfigError if none."""
    prefix = prefix.strip().lower()
    if len(prefix) < MIN_PREFIX:
        raise ConfigError(f"hash prefix {prefix!r} is too short; give at least {MIN_PREFIX} characters")
    matches = [m for m in trial_specs(results_dir)
               if m.spec.graph_hash.startswith(prefix) or m.spec.canonical_hash.startswith(prefix)]
    if not matches:
        raise ConfigError(f"no trial in {results_dir} has a graph_hash or canonical_hash starting with {prefix!r}")
    return matches
