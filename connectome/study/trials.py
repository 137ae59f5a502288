"""From a study to trials: assignments into planned trials, constraints, grids.

An assignment maps flat trial keys (arch keys unprefixed, `train.*`, `data.*`) to values.
Applied on top of the study's base it gives a frozen `TrialConfig`, which
connectome.training.plan.plan_trial turns into the trial the trainer will build. Its id is a
hash of the config without its resource keys (connectome.store.record.config_hash), so the same
computation gets the same id in every run, wherever and however fast it runs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from connectome.architecture import ArchConfig, make_arch
from connectome.errors import ConfigError, ConnectomeError
from connectome.study.limits import rejected_by_limits
from connectome.study.dedup import mark_duplicates
from connectome.study.schema import PATTERN_OPTION, GridSearch, Study
from connectome.training.config import DataConfig, TrainConfig, TrialConfig
from connectome.training.device_names import trial_device_kind
from connectome.training.plan import PlannedTrial, plan_trial, planned_arch
from connectome.training.plan import trial_id as trial_id  # the planned trial's id, re-exported


@dataclass(frozen=True)
class Trial:
    """One planned trial of a study: the plan, the search values that made it, and its verdict."""

    plan: PlannedTrial
    assignment: dict[str, Any] = field(default_factory=dict)
    # Why the constraints rejected it (None: accepted).
    rejected: str | None = None
    # The earlier trial with an isomorphic graph and the same training (see study/dedup.py).
    duplicate_of: str | None = None

    @property
    def trial_id(self) -> str:
        return self.plan.trial_id

    @property
    def config(self) -> TrialConfig:
        return self.plan.config

    @property
    def params(self) -> int:
        return self.plan.params

    @property
    def flops(self) -> int:
        """Multiply-adds per image."""
        return self.plan.flops


def split_assignment(assignment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat keys -> {"arch": {...}, "train": {...}, "data": {...}, "pattern_options": {...}}."""
    parts: dict[str, dict[str, Any]] = {"arch": {}, "train": {}, "data": {}, "pattern_options": {}}
    for key, value in assignment.items():
        section, _, name = key.partition(".") if key.startswith(PATTERN_OPTION) else key.rpartition(".")
        parts[section or "arch"][name] = value
    return parts


def assigned_arch(study: Study, parts: dict[str, dict[str, Any]]) -> ArchConfig:
    """The study's arch with the assignment's arch keys on top, then its single pattern options."""
    options = {**study.arch.model_dump(exclude_unset=True), **parts["arch"]}
    if parts["pattern_options"]:  # one option set by a factor joins the others, it does not replace them
        options["pattern_options"] = {**options.get("pattern_options", {}), **parts["pattern_options"]}
    return make_arch(**options)


def assigned_config(study: Study, assignment: dict[str, Any], seed: int) -> TrialConfig:
    """The study's base with the assignment on top, validated (budget matched if asked)."""
    parts = split_assignment(assignment)
    arch = assigned_arch(study, parts)
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

        arch, size = planned_arch(config)
        matched = match_budget(arch, study.budget.params, input_size=size)
        config = config.model_copy(update={"arch": config.arch.model_copy(update={"growth": matched.growth})})
    return config


def make_trial(study: Study, assignment: dict[str, Any], seed: int) -> Trial:
    """Plan the assigned config (which builds and so validates the network) and check constraints."""
    config = assigned_config(study, assignment, seed)
    plan = plan_trial(config, trial_device_kind(config.train.device, study.resources.gpu))
    return Trial(plan, dict(assignment), rejected_by(study, plan))


def rejected_by(study: Study, plan: PlannedTrial) -> str | None:
    """Why a candidate breaks the study's constraints or size limits, or None (nothing hashed yet)."""
    over = rejected_by_limits(study.limits, plan.params, plan.spec)
    if over:
        return over
    missed = study.budget.missed_by(plan.params) if study.budget is not None else None
    if missed:
        return missed
    params, flops = plan.params, plan.flops
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
