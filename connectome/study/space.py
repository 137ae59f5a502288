"""Search spaces: named parameter ranges kept in `search_spaces/*.yaml`, sampled by Optuna.

A parameter may be conditional (`when: {pattern: [mhc]}`): sampled only when an earlier parameter took
one of the listed values, so one search can cover several patterns, each with its own options.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectome.errors import ConfigError


class ParamSpec(BaseModel):
    """One searched parameter: a list of `choices`, or a `low`..`high` range (int or float)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Categorical values, sampled as they are (any YAML scalar).
    choices: list[Any] | None = None
    # Numeric range, inclusive; integers give an int parameter, otherwise float.
    low: int | float | None = None
    high: int | float | None = None
    # Grid step within the range (ints default to 1).
    step: int | float | None = None
    # Sample the range on a log scale (e.g. learning rates).
    log: bool = False
    # Sampled only when each named earlier parameter took one of the listed values (else left out of
    # the trial, which keeps the study's own value). Left out of dumps when unset.
    when: dict[str, list[Any]] | None = Field(None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _one_kind(self) -> "ParamSpec":
        has_range = self.low is not None or self.high is not None
        if (self.choices is None) == (not has_range):
            raise ValueError("give either `choices: [...]` or `low` and `high`, not both or neither")
        if self.choices is not None and not self.choices:
            raise ValueError("`choices` must list at least one value")
        if has_range:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both `low` and `high`")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("a log range needs low > 0")
            self._check_step()
        return self

    def _check_step(self) -> None:
        """A step is positive, an integer on an int range, and never combined with `log`."""
        if self.step is None:
            return
        if self.log:
            raise ValueError("`log` and `step` cannot be combined (a log range is sampled "
                             "continuously); drop one of them")
        if self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        if self.is_int and not (isinstance(self.step, int) and not isinstance(self.step, bool)):
            raise ValueError(f"an integer range ({self.low} .. {self.high}) needs an integer step, "
                             f"got {self.step}; write low/high as floats for a float range")

    def applies(self, params: dict[str, Any]) -> bool:
        """True when the parameters sampled so far meet this parameter's `when` condition."""
        return all(params.get(key, _UNSET) in values for key, values in (self.when or {}).items())

    def suggest(self, trial: Any, name: str) -> Any:
        """Sample this parameter on an Optuna trial (define-by-run)."""
        if self.choices is not None:
            return trial.suggest_categorical(name, self.choices)
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)

    @property
    def is_int(self) -> bool:
        """True when the range is over integers."""
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))

    def distribution(self):
        """The Optuna distribution of this parameter."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        if self.is_int:
            return IntDistribution(int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), step=self.step, log=self.log)


# A parameter not sampled in this trial (never equal to a listed value, None included).
_UNSET = object()


def check_conditions(space: dict[str, ParamSpec]) -> None:
    """ValueError unless every `when` names an earlier categorical parameter and values among its choices."""
    names = list(space)
    for i, (key, spec) in enumerate(space.items()):
        for other, values in (spec.when or {}).items():
            if other not in names[:i] or space[other].choices is None:
                earlier = [k for k in names[:i] if space[k].choices is not None]
                raise ValueError(f"{key}: when: {other!r} is not a categorical parameter listed before {key!r}; "
                                 f"use one of {', '.join(earlier) or 'none'}")
            unknown = [v for v in values if v not in space[other].choices]
            if not values or unknown:
                raise ValueError(f"{key}: when: {other}: {unknown or values} not among its choices "
                                 f"{space[other].choices}")


def is_conditional(space: dict[str, ParamSpec]) -> bool:
    """True when some parameter is sampled only under a condition."""
    return any(spec.when for spec in space.values())


class SpaceSampler:
    """Define-by-run sampling of a space (picklable: Ray Tune pickles its searcher, and with it this)."""

    def __init__(self, space: dict[str, ParamSpec]):
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, spec in self.space.items():
            if spec.applies(params):
                params[key] = spec.suggest(trial, key)
        return params


def ask_params(study: Any, space: dict[str, ParamSpec]) -> Any:
    """A new trial of an Optuna study with the space sampled on it (conditions honoured)."""
    if not is_conditional(space):  # the fixed-space ask, as before conditions existed
        return study.ask({key: spec.distribution() for key, spec in space.items()})
    trial = study.ask()
    SpaceSampler(space)(trial)
    return trial


def find_space_file(name: str, study_path: Path | None) -> Path:
    """Path of `search_spaces/<name>.yaml`, looked up beside the study file's ancestors, then cwd."""
    places = []
    if study_path is not None:
        places += [p / "search_spaces" for p in Path(study_path).resolve().parents]
    places.append(Path.cwd() / "search_spaces")
    for folder in places:
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for folder in places if folder.is_dir() for p in folder.glob("*.yaml")})
    raise ConfigError(
        f"search space {name!r} not found (looked for search_spaces/{name}.yaml beside the study"
        f" and in the current directory); known: {', '.join(known) or 'none'}"
    )


def make_sampler(study) -> Any:
    """The study's Optuna sampler, seeded (used by the Ray searcher and by replay)."""
    import optuna

    from connectome.study.samplers import NSGAIISampler

    search = study.search
    if search.sampler == "nsga2":
        options = {"population_size": search.population} if search.population else {}
        return NSGAIISampler(seed=search.sampler_seed, **options)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.sampler_seed)
    # `group` samples each conditional sub-space jointly (multivariate TPE alone would fall back to
    # independent sampling for parameters missing from some trials).
    if not is_conditional(study.space):
        return optuna.samplers.TPESampler(seed=search.sampler_seed, multivariate=True)
    with warnings.catch_warnings():  # `group` is marked experimental since Optuna 2.8; chosen knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=search.sampler_seed, multivariate=True, group=True)
