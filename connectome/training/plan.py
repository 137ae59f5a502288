"""What a trial will build, worked out once: `plan_trial(config) -> PlannedTrial`.

Every rule that turns a trial config into the network the trainer builds lives here: the
execution choices made concrete (connectome/training/resolve.py), the dataset's channels and
classes, the input size, dropout decided from the augmentation. The trainer, deduplication,
replay, export, constraints, budget matching, prescreen and `--dry-run` all read the same
PlannedTrial, so changing a rule here changes what each of them sees (docs/design.md, "The
planned trial"). Importing this module imports neither torch nor Ray.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from connectome.architecture import ArchConfig, decoder_columns
from connectome.builder import build_spec, resolved_m
from connectome.complexity import complexity
from connectome.spec import NetworkSpec
from connectome.store.record import RESOURCE_KEYS, config_hash, flatten, normalize_m
from connectome.training.catalog import augments, check_split, data_shape, dataset_info
from connectome.training.config import DataConfig, TrialConfig

# Dropout after each conv when the data is not augmented (paper, Sec. 4.2).
NO_AUGMENT_DROPOUT = 0.2


@dataclass(frozen=True)
class PlannedTrial:
    """A trial as it will be built and trained: its id, config, resolved arch, spec, size and keys."""

    trial_id: str
    # Execution choices ("auto") made concrete; the source of the id (the arch as it was asked for).
    config: TrialConfig
    # The network built: the dataset's channels and classes, dropout decided.
    arch: ArchConfig
    input_size: tuple[int, int, int]  # (C, H, W)
    spec: NetworkSpec
    params: int
    flops: int  # multiply-adds per image
    activations: int  # activation elements per image
    # Everything besides the graph and the seed that decides what the trial computes.
    train_hash: str

    @property
    def graph_hash(self) -> str:
        return self.spec.graph_hash

    @property
    def canonical_hash(self) -> str:
        return self.spec.canonical_hash

    def record_columns(self) -> dict[str, Any]:
        """The record's columns the plan decides (the arch as built, `m`, size, hashes): a trial's row
        carries them whether it trained, failed or was stopped."""
        return {**flatten(self.arch.model_dump(mode="json")), **decoder_columns(self.arch),
                "m": normalize_m(resolved_m(self.arch, self.spec)),
                "params": self.params, "flops": self.flops, "activations": self.activations,
                "graph_hash": self.graph_hash, "canonical_hash": self.canonical_hash}

    def to_json(self, hashes: bool = True) -> dict[str, Any]:
        """The plan as config.json and `--dry-run --json` hold it (canonical hash null without `hashes`)."""
        return {"trial_id": self.trial_id, "arch": self.arch.model_dump(mode="json"),
                "input_size": list(self.input_size), "params": self.params, "flops": self.flops,
                "activations": self.activations, "graph_hash": self.graph_hash,
                "canonical_hash": self.canonical_hash if hashes else None, "train_hash": self.train_hash,
                "execution": {k: getattr(self.config.train, k) for k in EXECUTION_KEYS}}


# The execution choices a plan makes concrete (connectome/training/resolve.py).
EXECUTION_KEYS = ("precision", "channels_last", "compile")


def plan_trial(config: TrialConfig, device_kind: str | None = None) -> PlannedTrial:
    """The trial the trainer will build from `config` (execution resolved for `device_kind`, default: here)."""
    from connectome.training.resolve import resolve_execution

    config = resolve_execution(config, device_kind)
    check_split(config.data)
    if dataset_info(config.data.name).recipe == "lm":
        from connectome.training.corpus import check_corpus

        check_corpus(config.data, config.arch.context, make=False)  # writes nothing: --dry-run stays read-only
    arch, size = planned_arch(config)
    spec = build_spec(arch)
    cx = complexity(spec, size)
    return PlannedTrial(trial_id=trial_id(config), config=config, arch=arch, input_size=size, spec=spec,
                        params=cx.params, flops=cx.flops, activations=cx.acts,
                        train_hash=training_key(config, with_seed=False))


def planned_arch(config: TrialConfig) -> tuple[ArchConfig, tuple[int, int, int]]:
    """The arch with the dataset's channels and classes and dropout decided, and the (C, H, W) input size."""
    size, classes = data_shape(config.data)
    dropout = config.arch.dropout
    if dropout is None:
        dropout = dataset_info(config.data.name).dropout
    if dropout is None:
        dropout = 0.0 if augments(config.data) else NO_AUGMENT_DROPOUT
    update = {"in_channels": size[0], "classes": classes, "dropout": dropout}
    return ArchConfig.model_validate({**config.arch.model_dump(), **update}), size


def classes_conflict(classes: int, data: DataConfig) -> str | None:
    """Why an `arch.classes` the user set explicitly cannot be honoured: the output layer is sized from the data."""
    expected = data_shape(data)[1]
    if classes == expected:
        return None
    return (f"arch.classes is {classes} but the {data.name} data has {expected} classes (the output layer is "
            f"sized from the data); remove arch.classes or set it to {expected}")


def trial_id(config: TrialConfig) -> str:
    """Deterministic id: the pattern name plus a hash of the resolved config's semantic part."""
    return f"{config.arch.pattern}-{config_hash(config.model_dump(mode='json'))}"


def training_key(config: TrialConfig, with_seed: bool = True) -> str:
    """Hash of everything besides the graph that decides what a trial computes (the seed optional).

    The raw `dropout` option is part of it (None is decided from the data, so None and 0.0 stay apart).
    """
    dumped = config.model_dump(mode="json")
    kept = {section: {k: v for k, v in dumped[section].items() if k not in RESOURCE_KEYS.get(section, ())}
            for section in ("data", "train")}
    kept.update(dropout=config.arch.dropout, **({"seed": config.seed} if with_seed else {}))
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
