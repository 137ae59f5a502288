"""The study file: a validated, frozen description of many trials, loaded once at the edge.

A study is a base trial (data, train, arch) plus a search (a grid or an Optuna sampler),
constraints that reject candidates before training, resources and the output directory.
`load_study(path, overrides)` reads YAML, applies `--set key=value` overrides and validates;
every error names the file, the key path and what is allowed.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectome.architecture import ArchConfig
from connectome.errors import ConfigError
from connectome.overrides import apply_overrides, read_yaml_mapping
from connectome.plugins import is_file_plugin, load_plugins
from connectome.study.limits import Limits, check_limits
from connectome.study.space import ParamSpec, check_conditions, find_space_file
from connectome.training import DataConfig, TrainConfig
from connectome.training.device_names import resource_problem

# Metrics a study can optimise: keys of the trial record (`flops` = multiply-adds per image). Test metrics are not among them:
# selecting on the test set and reporting it biases the reported numbers upward.
# Language models (data.name text) add bits per byte on the validation windows.
OBJECTIVE_METRICS = (
    "best_val_acc", "final_val_acc", "params", "flops", "wall_time_s", "train_time_s",
    "best_val_bpb", "final_val_bpb",
)
VALIDATION_METRICS = ("best_val_acc", "final_val_acc", "best_val_bpb", "final_val_bpb")
# A test metric a study might ask for -> the validation objective that replaces it.
TEST_METRIC_INSTEAD = {
    "test_acc": "best_val_acc (mode: max) or final_val_acc",
    "test_error": "best_val_acc (mode: max; error = 1 - accuracy) or final_val_acc",
    "test_loss": "best_val_acc (mode: max) or final_val_acc (a language model: best_val_bpb, mode: min)",
    "test_bpb": "best_val_bpb (mode: min) or final_val_bpb",
}
# Per-epoch metrics a scheduler may stop trials on -> the better direction. Validation only: the
# worker's per-epoch report never carries test metrics (orchestration/worker.py, epoch_metrics).
SCHEDULER_METRICS = {"val_acc": "max", "val_loss": "min", "val_bpb": "min"}


def reject_test_metric(value: Any, instead: str) -> Any:
    """Raise ValueError for a test metric (reported, never optimised or selected on); else the value."""
    if isinstance(value, str) and value.startswith("test_"):
        raise ValueError(f"{value!r} is a test metric: it is reported, never optimised; use {instead} instead")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Prescreen(_Frozen):
    """Train only the configurations a zero-cost proxy at initialisation ranks highest (study/prescreen.py)."""

    # A recorded proxy (connectome.proxies.PROXIES) or `params`; higher is kept, as in the proxies' papers.
    proxy: str
    # Fraction of the configurations trained (rounded up, at least one); the rest are skipped.
    keep: float = Field(gt=0.0, le=1.0)

    @field_validator("proxy")
    @classmethod
    def _known_proxy(cls, v: str) -> str:
        from connectome.proxies import PROXIES

        known = (*PROXIES, "params")
        if v not in known:
            raise ValueError(f"unknown proxy {v!r}; use one of {', '.join(known)}")
        return v


class GridSearch(_Frozen):
    """The full factorial of `factors`, crossed with `variants`, times `seeds` replicates."""

    kind: Literal["grid"]
    # Factor -> values; arch keys unprefixed (growth), others prefixed (train.lr, data.subset).
    factors: dict[str, list[Any]] = Field(default_factory=dict)
    # Settings that only make sense together (e.g. {pattern: partial, m: 8}); each is crossed
    # with the factors. The default is one empty variant.
    variants: list[dict[str, Any]] = Field(default_factory=lambda: [{}])
    # Number of replicates (seeds 0..n-1) or an explicit list of seeds.
    seeds: int | list[int] = 1
    # Score every configuration by a zero-cost proxy before training and train the top fraction only.
    # Left out of dumps when unset, so the stored definitions of earlier studies still match on --resume.
    prescreen: Prescreen | None = Field(None, exclude_if=lambda v: v is None)

    @field_validator("factors")
    @classmethod
    def _non_empty_levels(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, levels in v.items():
            if not levels:
                raise ValueError(f"factor {key!r} has no values; list at least one")
        return v

    @field_validator("variants")
    @classmethod
    def _some_variants(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not v:
            raise ValueError("variants must list at least one entry (use {} for the base)")
        return v

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"seeds must be >= 1 replicates, got {v}")
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {v}")
        return v

    @property
    def seed_list(self) -> list[int]:
        """The replicate seeds."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


class Objective(_Frozen):
    """One objective of an Optuna search: a record metric and a direction."""

    metric: Literal[OBJECTIVE_METRICS]  # type: ignore[valid-type]
    mode: Literal["max", "min"]

    @field_validator("metric", mode="before")
    @classmethod
    def _not_a_test_metric(cls, v: Any) -> Any:
        instead = TEST_METRIC_INSTEAD.get(v, "best_val_acc (mode: max) or final_val_acc") if isinstance(v, str) else ""
        return reject_test_metric(v, instead)


class OptunaSearchConfig(_Frozen):
    """An Optuna sampler over a search space, with one or several objectives."""

    kind: Literal["optuna"]
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    # Name of search_spaces/<name>.yaml, or the space inline (parameter -> ParamSpec).
    space: str | dict[str, ParamSpec]
    objectives: list[Objective] = Field(min_length=1)
    n_trials: int = Field(ge=1)
    # Seed of every trial (initialisation, data order); replicates are a grid's job.
    seed: int = 0
    # Seed of the sampler, so the sequence of candidates is reproducible.
    sampler_seed: int = 0
    # NSGA-II population per generation (Optuna's default 50 suits long searches only).
    population: int | None = Field(None, ge=2)
    # Where Optuna keeps the study: None = results/<name>/optuna.db (SQLite: one machine, not on
    # NFS); "journal" = results/<name>/optuna.journal (Optuna's journal file, for shared
    # filesystems); or an RDB URL (postgresql://..., mysql://...) for a cluster.
    storage: str | None = None

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str | None) -> str | None:
        if v is not None and v != "journal" and "://" not in v:
            raise ValueError(f"storage {v!r}: use null (optuna.db), 'journal', or a database URL such as "
                             "postgresql://user@host/db")
        return v


class Constraints(_Frozen):
    """Limits checked from the spec before training; candidates over them are rejected."""

    max_params: int | None = Field(None, gt=0)
    # Multiply-adds per image (the record's `flops` column), not floating-point operations.
    max_flops: int | None = Field(None, gt=0)


class Budget(_Frozen):
    """Match every candidate to this parameter count by choosing its growth rate."""

    params: int = Field(gt=0)
    # Refuse a candidate whose closest growth still misses `params` by more than this fraction (a
    # width comes in steps, a decoder's of twice its heads); None accepts the closest, however far.
    # Left out of dumps when unset, so the stored definitions of earlier studies still match.
    tolerance: float | None = Field(None, gt=0.0, exclude_if=lambda v: v is None)

    def missed_by(self, params: int) -> str | None:
        """Why a matched candidate's params are too far from the budget, or None."""
        off = abs(params - self.params) / self.params
        if self.tolerance is None or off <= self.tolerance:
            return None
        return (f"{params:,} params miss the budget {self.params:,} by {off:.1%} > tolerance {self.tolerance:.1%} "
                "at the closest width")


class Resources(_Frozen):
    """What each trial gets from Ray, and how many trials run at once."""

    # CPUs (threads) per trial, or "auto": as many trials at once as there are CPUs, the CPUs
    # split evenly when the study has fewer trials left than CPUs (resolved by the driver when it
    # knows the machine and what is left to run; see connectome/orchestration/resources.py).
    cpu: Union[Literal["auto"], Annotated[float, Field(gt=0)]] = "auto"
    gpu: float = Field(0.0, ge=0)
    # At most this many trials at once (default: as many as the resources allow).
    max_concurrent: int | None = Field(None, ge=1)
    # At most this many trials per Ray Tune run: a longer study runs in waves, consecutive Tune
    # runs, which bounds Tune's trial list and experiment state (default: 2000, or 50 times the
    # trials that run at once if more; connectome/orchestration/waves.py). `trials_per_batch`,
    # its name before "batch" was kept for the training mini-batch, is still read.
    trials_per_wave: int | None = Field(None, ge=1, validation_alias=AliasChoices("trials_per_wave", "trials_per_batch"))


class MLflowTracking(_Frozen):
    """Where MLflow keeps the study's runs (one run per trial)."""

    # An MLflow tracking URI: http://HOST:5000 (a server), sqlite:///mlflow.db, file:///abs/dir.
    # Default: MLflow's own ($MLFLOW_TRACKING_URI, else its local default).
    tracking_uri: str | None = None
    # The MLflow experiment the runs go to (created if missing); default: the study's name.
    experiment: str | None = Field(None, min_length=1)


class Tracking(_Frozen):
    """Experiment trackers fed through Ray Tune's logger callbacks (validation/training metrics only)."""

    mlflow: MLflowTracking | None = None
    # true: TensorBoard event files in results/<name>/tensorboard/<trial_id>/; or a directory.
    tensorboard: bool | str = False


class _SchedulerBase(_Frozen):
    """What every multi-fidelity scheduler shares: the per-epoch metric and the fidelity's maximum."""

    # Per-epoch validation metric the scheduler ranks trials on (a key of SCHEDULER_METRICS).
    metric: Literal[tuple(SCHEDULER_METRICS)] = "val_acc"  # type: ignore[valid-type]
    # Rung spacing: a rung keeps about 1/reduction_factor of the trials that reach it.
    reduction_factor: float = Field(3, gt=1)
    # Maximum epochs of a trial (the fidelity); None = train.epochs, which it must equal.
    max_t: int | None = Field(None, ge=1)

    @field_validator("metric", mode="before")
    @classmethod
    def _not_a_test_metric(cls, v: Any) -> Any:
        return reject_test_metric(v, " or ".join(SCHEDULER_METRICS))

    @property
    def mode(self) -> str:
        """`max` or `min`: the direction in which the metric is better."""
        return SCHEDULER_METRICS[self.metric]


class NoScheduler(_Frozen):
    """Every trial trains for all its epochs (the default)."""

    kind: Literal["none"] = "none"


class AshaScheduler(_SchedulerBase):
    """Asynchronous successive halving (Ray Tune's ASHAScheduler) with the epoch as fidelity."""

    kind: Literal["asha"]
    # Epochs every trial trains before it can be stopped (the first rung).
    grace_period: int = Field(1, ge=1)


class HyperBandScheduler(_SchedulerBase):
    """Synchronous HyperBand (Ray Tune's HyperBandScheduler): brackets pause trials at rungs."""

    kind: Literal["hyperband"]


SchedulerConfig = Annotated[Union[NoScheduler, AshaScheduler, HyperBandScheduler], Field(discriminator="kind")]
SCHEDULER_CONFIGS = (NoScheduler, AshaScheduler, HyperBandScheduler)


class Study(_Frozen):
    """One study file, validated."""

    # Directory name under `output`; letters, digits, dot, dash, underscore. At most 100 characters:
    # the directory's name gains suffixes (`-<fingerprint>`, `.old-<time>`) within a file system's 255.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    # Parent directory of the results (results/<name>/); relative to the working directory.
    output: str = "results"
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    # The base architecture; the search overrides its keys.
    arch: ArchConfig = Field(default_factory=ArchConfig)
    search: Annotated[Union[GridSearch, OptunaSearchConfig], Field(discriminator="kind")]
    constraints: Constraints = Field(default_factory=Constraints)
    budget: Budget | None = None
    resources: Resources = Field(default_factory=Resources)
    # Multi-fidelity early stopping (connectome/orchestration/scheduler.py); `none` trains every
    # trial to the end. Stopped trials are recorded with `stopped_early` and are final.
    scheduler: SchedulerConfig = Field(default_factory=NoScheduler)
    # Extra attempts of a failed trial (diverged trials are not retried).
    retries: int = Field(0, ge=0)
    # Modules that register custom patterns, imported by the CLI and by every Ray worker: module
    # names (importable on every node) or paths to .py files (relative to the study file's folder).
    plugins: list[str] = Field(default_factory=list)
    # Size bounds checked before planning (see connectome/study/limits.py); raise one to go beyond.
    limits: Limits = Field(default_factory=Limits)
    # Experiment tracking (MLflow, TensorBoard); needs the `[tracking]` extra. See README, "Tracking".
    tracking: Tracking = Field(default_factory=Tracking)
    # Where the file came from (set by load_study, not by the file).
    source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _plugin_paths_from_study_folder(cls, data: Any) -> Any:
        """Plugin .py paths become absolute, so workers in other folders find them."""
        if isinstance(data, dict) and data.get("source") and isinstance(data.get("plugins"), list):
            folder = Path(data["source"]).parent
            data = {**data, "plugins": [str((folder / p).resolve()) if isinstance(p, str) and is_file_plugin(p)
                                        else p for p in data["plugins"]]}
        return data

    @model_validator(mode="after")
    def _known_search_keys(self) -> "Study":
        if isinstance(self.search, GridSearch):
            for key in self.search.factors:
                check_trial_key(key, f"search.factors.{key}")
            for i, variant in enumerate(self.search.variants):
                for key in variant:
                    check_trial_key(key, f"search.variants[{i}].{key}")
        elif isinstance(self.search.space, dict):
            for key in self.search.space:
                check_trial_key(key, f"search.space.{key}")
            check_conditions(self.search.space)
        return self

    @model_validator(mode="after")
    def _within_limits(self) -> "Study":
        check_limits(self)
        return self

    @model_validator(mode="after")
    def _classes_from_the_data(self) -> "Study":
        # An explicit arch.classes the data contradicts was silently replaced (issue 30: classes 1 trained 4).
        if "classes" in self.arch.model_fields_set:
            from connectome.errors import ConnectomeError
            from connectome.training.plan import classes_conflict

            try:
                problem = classes_conflict(self.arch.classes, self.data)
            except ConnectomeError:  # an unknown dataset: planning names it
                return self
            if problem:
                raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _validation_split_for_objectives(self) -> "Study":
        if isinstance(self.search, OptunaSearchConfig) and self.data.val_size == 0:
            used = [o.metric for o in self.search.objectives if o.metric in VALIDATION_METRICS]
            if used:
                raise ValueError(f"search.objectives: {used[0]} needs a validation split, "
                                 "but data.val_size is 0; hold out images (e.g. data.val_size: 5000)")
        return self

    @model_validator(mode="after")
    def _resources_fit_the_device(self) -> "Study":
        # Ray decides which GPU a trial gets; a device it cannot honour fails every trial.
        devices = {self.train.device}
        if isinstance(self.search, GridSearch):
            devices.update(self.search.factors.get("train.device", []))
            devices.update(v["train.device"] for v in self.search.variants if "train.device" in v)
        for name in sorted(map(str, devices)):
            problem = resource_problem(name, self.resources.gpu)
            if problem:
                raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _scheduler_fits_the_study(self) -> "Study":
        problem = scheduler_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def space(self) -> dict[str, ParamSpec]:
        """The Optuna search space, loaded from search_spaces/ when named."""
        space = self.search.space
        return load_space(space, self.source) if isinstance(space, str) else space


# Prefix of a trial key naming one pattern option (`pattern_options.max_span`), so a single option
# can be a factor; the pattern itself validates the name and value when the spec is built.
PATTERN_OPTION = "pattern_options."


def scheduler_problem(study: Study) -> str | None:
    """Why the study's scheduler cannot run as asked, or None."""
    sched, epochs = study.scheduler, study.train.epochs
    if isinstance(sched, NoScheduler):
        return None
    if "train.epochs" in searched_keys(study.search):
        return "scheduler: train.epochs is searched, but a scheduler needs one epoch budget (its max_t)"
    if sched.max_t is not None and sched.max_t != epochs:
        return (f"scheduler.max_t: {sched.max_t} must equal train.epochs ({epochs}), the fidelity's maximum; "
                "omit it to use train.epochs")
    if getattr(sched, "grace_period", 0) >= epochs:
        return (f"scheduler.grace_period: {sched.grace_period} leaves no epoch to stop at; "
                f"use fewer than train.epochs ({epochs})")
    if study.data.val_size == 0:
        return f"scheduler: {sched.metric} needs a validation split, but data.val_size is 0"
    if isinstance(study.search, OptunaSearchConfig) and len(study.search.objectives) > 1:
        return "scheduler: stops trials on one validation metric; use it with a single-objective search"
    return None


def searched_keys(search: GridSearch | OptunaSearchConfig) -> set[str]:
    """Trial keys a search varies: grid factors and variant keys, or the Optuna space's (when inline)."""
    if isinstance(search, GridSearch):
        return set(search.factors) | {k for v in search.variants for k in v}
    return set(search.space) if isinstance(search.space, dict) else set()


def check_trial_key(key: str, where: str) -> None:
    """Raise ValueError unless key is an arch field, a `train.`/`data.` field or `pattern_options.<name>`."""
    if key.startswith(PATTERN_OPTION) and key[len(PATTERN_OPTION):].isidentifier():
        return
    section, _, field = key.rpartition(".")
    models = {"": ArchConfig, "train": TrainConfig, "data": DataConfig}
    model = models.get(section)
    # `preset` is allowed: it supplies defaults under the study's and the variant's explicit arch keys
    if model is None or field not in model.model_fields:
        allowed = sorted(ArchConfig.model_fields)
        raise ValueError(
            f"{where}: unknown trial key {key!r}; use an arch key ({', '.join(allowed)}),"
            f" or train.<key> ({', '.join(TrainConfig.model_fields)}),"
            f" or data.<key> ({', '.join(DataConfig.model_fields)}),"
            " or pattern_options.<option of the pattern>"
        )


def load_space(name: str, study_path: str | None) -> dict[str, ParamSpec]:
    """A named search space from search_spaces/<name>.yaml, validated."""
    path = find_space_file(name, Path(study_path) if study_path else None)
    raw = read_yaml_mapping(path, "search space", "parameter: {choices: [...]} or {low, high}")
    space = {}
    for key, spec in raw.items():
        try:
            check_trial_key(key, key)
            space[key] = ParamSpec.model_validate(spec)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, path, prefix=key)) from None
        except ValueError as err:
            raise ConfigError(f"{path}: {err}") from None
    if not space:
        raise ConfigError(f"{path}: the search space is empty; list parameters as `name: {{choices: [...]}}`")
    try:
        check_conditions(space)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from None
    return space


def load_study(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Study:
    """Read, override and validate a study file."""
    path = Path(path)
    data = read_yaml_mapping(path, "study file", "name, data, search, ...")
    apply_overrides(data, overrides)
    if "source" in data:
        raise ConfigError(f"{path}: 'source' is set by connectome, remove it from the file")
    try:
        study = Study.model_validate({**data, "source": str(path)})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, path)) from None
    try:
        load_plugins(study.plugins)  # before anything builds a spec with a plugin's pattern
    except ConfigError as err:
        raise ConfigError(f"{path}: plugins: {err}") from None
    if isinstance(study.search, OptunaSearchConfig) and isinstance(study.search.space, str):
        try:
            study.space  # noqa: B018 - load now so a missing or bad space fails at the edge
        except ConfigError as err:
            raise ConfigError(f"{path}: search.space: {err}") from None
    return study


def format_validation_error(err: ValidationError, path: Path, prefix: str = "") -> str:
    """One line per problem: file, key path, what is wrong and what is allowed."""
    lines = []
    errors = err.errors()
    for item in errors:
        if _other_union_branch_failed(item, errors):
            continue
        # pydantic names union branches in the location (e.g. `dict[str,...]`); the user never wrote them
        loc = [str(p) for p in item["loc"] if not (isinstance(p, str) and "[" in p)]
        key = ".".join(([prefix] if prefix else []) + loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            allowed = allowed_keys(item["loc"][:-1])
            message = f"unknown key {loc[-1]!r}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        elif item["type"] == "missing":
            message = "required key is missing"
        # whole-study checks (limits, search keys) name their own keys
        lines.append(f"{key}: {message}" if key else message)
    return f"{path}: " + "; ".join(lines)


def _other_union_branch_failed(item: dict, errors: list[dict]) -> bool:
    """True for `x.str: should be a string` when x's other branch (a mapping) has a deeper error."""
    loc = item["loc"]
    if not loc or loc[-1] not in ("str", "int", "float", "bool"):
        return False
    return any(len(e["loc"]) > len(loc) and e["loc"][:len(loc) - 1] == loc[:-1] for e in errors)


def allowed_keys(loc: tuple) -> list[str]:
    """Field names of the model found at this location of the study schema."""
    model: Any = Study
    for step in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(step) if isinstance(step, str) else None
        if field is None:
            # a discriminated union adds the tag (grid/optuna) as a location step
            model = _union_member(model, step)
            continue
        model = _model_in(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f for f in model.model_fields if f != "source"]
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel (or union of them) inside an annotation like `X | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(models) == 1:
        return models[0]
    for arg in typing.get_args(annotation):
        inner = _model_in(arg)
        if inner is not None:
            return inner
    return None


def _union_member(model: Any, tag: Any) -> Any:
    """The search or scheduler config class whose `kind` is tag."""
    for cls in (GridSearch, OptunaSearchConfig, *SCHEDULER_CONFIGS):
        if tag in typing.get_args(cls.model_fields["kind"].annotation):
            return cls
    return None
