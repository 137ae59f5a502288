"""From a study to trials: resolve assignments into TrialConfigs, ids, constraints, grids.

An assignment maps flat trial keys (arch keys unprefixed, `train.*`, `data.*`) to values.
Resolving it on top of the study's base gives a frozen `TrialConfig`; its id is a hash of
the resolved config without its resource keys (connectome.store.record.config_hash), so the
same computation gets the same id in every run, wherever and however fast it runs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from connectome.architecture import ArchConfig, make_arch
from connectome.errors import ConfigError, ConnectomeError
from connectome.store.record import config_hash
from connectome.study.limits import rejected_by_limits
from connectome.study.dedup import mark_duplicates
from connectome.study.schema import PATTERN_OPTION, GridSearch, Study
from connectome.training import DataConfig, TrainConfig, TrialConfig
from connectome.training.datasets import arch_for_data
from connectome.training.datasets import data_shape as dataset_shape
from connectome.training.resolve import resolve_execution


@dataclass(frozen=True)
class Trial:
    """One resolved trial: its id, config, the search values that made it, and its size."""

    trial_id: str
    config: TrialConfig
    assignment: dict[str, Any] = field(default_factory=dict)
    params: int | None = None
    flops: int | None = None
    # Why the constraints rejected it (None: accepted).
    rejected: str | None = None
    # The earlier trial with an isomorphic graph and the same training (see study/dedup.py).
    duplicate_of: str | None = None


def trial_id(config: TrialConfig) -> str:
    """Deterministic id: the pattern name plus a hash of the resolved config's semantic part."""
    return f"{config.arch.pattern}-{config_hash(config.model_dump(mode='json'))}"


def split_assignment(assignment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat keys -> {"arch": {...}, "train": {...}, "data": {...}, "pattern_options": {...}}."""
    parts: dict[str, dict[str, Any]] = {"arch": {}, "train": {}, "data": {}, "pattern_options": {}}
    for key, value in assignment.items():
        section, _, name = key.partition(".") if key.startswith(PATTERN_OPTION) else key.rpartition(".")
        parts[section or "arch"][name] = value
    return parts


def resolve_arch(study: Study, parts: dict[str, dict[str, Any]]) -> ArchConfig:
    """The study's arch with the assignment's arch keys on top, then its single pattern options."""
    options = {**study.arch.model_dump(exclude_unset=True), **parts["arch"]}
    if parts["pattern_options"]:  # one option set by a factor joins the others, it does not replace them
        options["pattern_options"] = {**options.get("pattern_options", {}), **parts["pattern_options"]}
    return make_arch(**options)


def resolve_config(study: Study, assignment: dict[str, Any], seed: int) -> TrialConfig:
    """The study's base with the assignment on top, validated (budget matched if asked)."""
    parts = split_assignment(assignment)
    arch = resolve_arch(study, parts)
    try:
        config = TrialConfig(
            arch=arch,
            data=DataConfig.model_validate({**study.data.model_dump(exclude_unset=True), **parts["data"]}),
            train=TrainConfig.model_validate({**study.train.model_dump(exclude_unset=True), **parts["train"]}),
            seed=seed,
        )
    except ValueError as err:
        raise ConfigError(f"invalid trial {assignment}: {err}") from None
    if study.budget is not None:
        from connectome.complexity import match_budget

        arch, size = arch_for_data(config)
        matched = match_budget(arch, study.budget.params, input_size=size)
        config = config.model_copy(update={"arch": config.arch.model_copy(update={"growth": matched.growth})})
    # Hook (issue 9): precision/compile "auto" made concrete at planning, before the trial id is taken.
    return resolve_execution(config)


def data_shape(config: TrialConfig) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) of the dataset's images and its number of classes, known without loading them."""
    return dataset_shape(config.data)


def measure(config: TrialConfig) -> tuple[int, int]:
    """Params and multiply-adds per image (the record's `flops`) from the spec, with the dataset's channels and classes as the trainer sets them."""
    from connectome.builder import build_spec
    from connectome.complexity import complexity

    arch, size = arch_for_data(config)
    cx = complexity(build_spec(arch), size)
    return cx.params, cx.flops


def make_trial(study: Study, assignment: dict[str, Any], seed: int) -> Trial:
    """Resolve, measure from the spec (which also validates the network) and check constraints."""
    config = resolve_config(study, assignment, seed)
    params, flops = measure(config)
    return Trial(trial_id(config), config, dict(assignment), params, flops, rejected_by(study, params, flops))


def rejected_by(study: Study, params: int | None, flops: int | None) -> str | None:
    """Why a candidate breaks the study's constraints or size limits, or None."""
    over = rejected_by_limits(study.limits, params)
    if over:
        return over
    limits = study.constraints
    if limits.max_params and params is not None and params > limits.max_params:
        return f"{params:,} params > max_params {limits.max_params:,}"
    if limits.max_flops and flops is not None and flops > limits.max_flops:
        return f"{flops:,} multiply-adds per image > max_flops {limits.max_flops:,}"
    return None


def grid_assignments(search: GridSearch) -> list[dict[str, Any]]:
    """Every variant crossed with the full factorial of the factors (seeds excluded)."""
    keys = list(search.factors)
    combos = [dict(zip(keys, values)) for values in itertools.product(*search.factors.values())]
    return [{**variant, **combo} for variant in search.variants for combo in combos]


def expand_grid(study: Study) -> list[Trial]:
    """All trials of a grid study, seeds innermost, in a stable order; duplicates merged."""
    if not isinstance(study.search, GridSearch):
        raise ConfigError(f"study {study.name!r} is an {study.search.kind} search, not a grid")
    trials: dict[str, Trial] = {}
    for i, assignment in enumerate(grid_assignments(study.search)):
        for seed in study.search.seed_list:
            try:
                trial = make_trial(study, assignment, seed)
            except ConnectomeError as err:
                raise ConfigError(f"{study.source}: search: combination {assignment}: {err}") from None
            trials.setdefault(trial.trial_id, trial)
    # Dedup hook: isomorphic architectures with the same training run once (connectome/study/dedup.py).
    return mark_duplicates(list(trials.values()))
