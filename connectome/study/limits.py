"""Size bounds of a study, checked from the study file before anything is expanded, built or allocated.

A typo such as `seeds: 1000000000` or a 40^4 grid would otherwise end in a MemoryError or a
dry run that never returns. Each bound has a default far above any study this machine can
run; a study that really needs more raises it in its own `limits:` section, e.g.

    limits: {trials: 50000, depth: 2000}

so the override is recorded with the study it applies to. The one-network commands use the
same bounds: `connectome train` reads a `limits:` section of its config file (or
`--set limits.depth=N`), `connectome graph` takes `--limit depth=N`.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """Upper bounds on what one study may plan; raise one in the study's `limits:` section."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Planned trials: grid variants x factor levels x seeds, or an Optuna search's n_trials.
    trials: int = Field(10_000, ge=1)
    # Layers of a network, counted as its spec counts them: one per layer node (a DenseNet layer, a
    # ResNet unit), not the paper's L, which counts every conv (a bottleneck unit is 3). Planning and
    # hashing cost grows with the nodes, so preact-resnet-1001 (332 units) fits and a 1,500-layer
    # graph file does not.
    depth: int = Field(1_000, ge=1)
    # Growth rate k (channels each layer adds).
    growth: int = Field(1_024, ge=1)
    # Parameters of one candidate, counted from its spec; larger candidates are rejected.
    params: int = Field(500_000_000, ge=1)
    # Training and evaluation batch size.
    batch_size: int = Field(65_536, ge=1)
    # Bytes of a generated `synthetic` dataset (train + test images, uint8), in MiB.
    synthetic_mib: int = Field(4_096, ge=1)


# How each command raises a bound, for the error message ({key} is the Limits field).
IN_STUDY_FILE = "with `limits: {{{key}: N}}` in the study file"


def check_limits(study: Any) -> None:
    """Raise ValueError naming the key, its size and the `limits:` entry to raise; expands nothing."""
    limits: Limits = study.limits
    _check("the plan", plan_size(study.search), limits.trials, "trials",
           "fewer seeds, factor levels or n_trials")
    for arch, depth in _depth_variants(study):
        _check_layers(arch, depth, limits.depth)
    for value in _values(study, "block_layers"):
        _check("block_layers (total layers)", sum(_numbers(value)), limits.depth, "depth")
    for value in _values(study, "growth"):
        _check("growth", value, limits.growth, "growth")
    for key in ("train.batch_size", "train.eval_batch_size"):
        for value in _values(study, key):
            _check(key, value, limits.batch_size, "batch_size")
    if study.data.name == "synthetic":
        _check_synthetic(study.data.synthetic, limits)


def check_trial_limits(config: Any, limits: Limits, how: str) -> None:
    """Raise ValueError if one trial's network, batch or synthetic data exceeds the limits."""
    check_arch_limits(config.arch, limits, how)
    for key in ("batch_size", "eval_batch_size"):
        _check(f"train.{key}", getattr(config.train, key), limits.batch_size, "batch_size", how=how)
    if config.data.name == "synthetic":
        _check_synthetic(config.data.synthetic, limits, how)


def check_arch_limits(arch: Any, limits: Limits, how: str) -> None:
    """Raise ValueError if an ArchConfig is deeper or wider than the limits (before its spec is built)."""
    _check_layers(arch, arch.depth, limits.depth, how)
    if arch.block_layers:
        _check("block_layers (total layers)", sum(arch.block_layers), limits.depth, "depth", how=how)
    _check("growth", arch.growth, limits.growth, "growth", how=how)


def check_spec_limits(spec: Any, limits: Limits, how: str = IN_STUDY_FILE) -> None:
    """Raise ValueError if a built spec has more layers than limits.depth (graph files set their own
    depth); called before anything costly (hashes, complexity, a model) is computed from it."""
    _check("layers (graph files included)", sum(block.n_layers for block in spec.blocks), limits.depth,
           "depth", how=how)


def _check_layers(arch: Any, depth: Any, bound: int, how: str = IN_STUDY_FILE) -> None:
    """Raise ValueError if the network of `arch` (None: not buildable) has more layer nodes than bound."""
    from connectome.builder import planned_layers

    layers = None if arch is None else planned_layers(arch)
    if layers is None:  # not known before building (graph file, bad depth): bound the depth itself
        _check("depth", depth, bound, "depth", how=how)
    elif layers > bound:
        raise ValueError(f"depth is {depth:,} ({layers:,} layers), over the limit of {bound:,} layers; raise "
                         "the limit " + how.format(key="depth"))


def _depth_variants(study: Any) -> list[tuple[Any, Any]]:
    """(arch or None, depth) for each depth a study's trials take: the base (its preset applied),
    grid factors and variants, the Optuna space's largest."""
    base = study.arch.model_dump(exclude_unset=True)
    options = [base] + [{**base, "depth": v} for v in _values(study, "depth")]
    if study.search.kind == "grid":
        arch_keys = [{k: v for k, v in variant.items() if "." not in k} for variant in study.search.variants]
        options += [{**base, **keys} for keys in arch_keys if "depth" in keys]
    archs = [_arch_or_none(o) for o in options]
    return [(arch, o.get("depth") if arch is None else arch.depth) for arch, o in zip(archs, options)]


def _arch_or_none(options: dict[str, Any]) -> Any:
    """The ArchConfig trials would build from these options (preset applied), or None if invalid."""
    from connectome.architecture import make_arch
    from connectome.errors import ConnectomeError

    try:
        return make_arch(**options)
    except (ConnectomeError, TypeError):
        return None


def check_planned_limits(plan: Any, limits: Limits, how: str) -> None:
    """Raise ValueError if a planned network has more layers or parameters than the limits (before a model exists)."""
    check_spec_limits(plan.spec, limits, how)
    _check("params (counted from the spec)", plan.params, limits.params, "params", how=how)


def _check_synthetic(s: Any, limits: Limits, how: str = IN_STUDY_FILE) -> None:
    mib = (s.train + s.test) * s.channels * s.size * s.size / 2**20
    _check("data.synthetic (MiB of images)", mib, limits.synthetic_mib, "synthetic_mib", how=how)


def plan_size(search: Any) -> int:
    """Trials a search plans, from its counts alone (the grid is not expanded)."""
    if search.kind == "optuna":
        return search.n_trials
    seeds = search.seeds if isinstance(search.seeds, int) else len(search.seeds)
    return len(search.variants) * math.prod(len(levels) for levels in search.factors.values()) * seeds


def rejected_by_limits(limits: Limits, params: int | None, spec: Any = None) -> str | None:
    """Why a measured candidate is over the study's limits (params, layers of its spec), or None."""
    if params is not None and params > limits.params:
        return f"{params:,} params > limits.params {limits.params:,} (raise it under `limits:`)"
    layers = 0 if spec is None else sum(block.n_layers for block in spec.blocks)
    if layers > limits.depth:
        return f"{layers:,} layers > limits.depth {limits.depth:,} (raise it under `limits:`)"
    return None


def _check(what: str, value: Any, bound: int, key: str, fix: str = "", how: str = IN_STUDY_FILE) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > bound:
        shown = f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"
        hint = f"use {fix}, or raise" if fix else "raise"
        raise ValueError(f"{what} is {shown}, over the limit of {bound:,}; {hint} the limit "
                         + how.format(key=key))


def _values(study: Any, key: str) -> list[Any]:
    """Every value a trial key takes in the study: the base, grid factors and variants, Optuna space."""
    section, _, field = key.rpartition(".")
    base = getattr(study, section or "arch")
    values = [getattr(base, field, None)]
    search = study.search
    if search.kind == "grid":
        values += list(search.factors.get(key, []))
        values += [v[key] for v in search.variants if key in v]
    else:
        spec = _space(study).get(key)
        if spec is not None:
            values += list(spec.choices) if spec.choices is not None else [spec.high]
    return [v for v in values if v is not None]


def _space(study: Any) -> dict[str, Any]:
    """The Optuna space, inline or from search_spaces/ ({} if the file is bad: load_study says why)."""
    from connectome.errors import ConnectomeError

    try:
        return study.space
    except ConnectomeError:
        return {}


def _numbers(value: Any) -> Iterable[float]:
    """The numbers of a scalar or list value (others count as 0)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
