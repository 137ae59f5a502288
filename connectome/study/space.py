"""Search spaces: named parameter ranges kept in `search_spaces/*.yaml`, sampled by Optuna."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

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
    return optuna.samplers.TPESampler(seed=search.sampler_seed, multivariate=True)
