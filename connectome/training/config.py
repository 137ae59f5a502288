"""Trial configuration: what to train (arch), on what (data), how (train), with which seed.

Validated once at the edge (CLI, study file, `train_trial`) into frozen objects. Defaults are
the paper's recipe (Huang et al., arXiv 1608.06993 v1, 2016, Sec. 4.1 "Training Setting"); every key can be overridden.
"""
from __future__ import annotations

import typing
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from connectome.architecture import ArchConfig, make_arch
from connectome.errors import ConfigError, describe_validation

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class _Section(BaseModel):
    """A config section whose numbers are numbers: `epochs: true` is refused, not read as 1 (lax pydantic would)."""

    model_config = _FROZEN

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"a number is needed, not {str(value).lower()}")
        return value


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type accepts true/false (bool, a union or Literal with bool, anything untyped)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(arg) or arg is True or arg is False for arg in typing.get_args(annotation))


class SyntheticConfig(_Section):
    """Shape of the generated `synthetic` dataset (class prototypes plus noise)."""

    model_config = _FROZEN

    # Training images generated (before the validation split).
    train: int = Field(2000, ge=2)
    # Test images generated.
    test: int = Field(500, ge=1)
    # Image side in pixels (square images).
    size: int = Field(16, ge=4)
    # Image channels: 1 for grayscale, 3 for colour.
    channels: int = Field(3, ge=1)
    # Number of classes.
    classes: int = Field(10, ge=2)
    # Noise amplitude relative to the class pattern; higher is harder.
    noise: float = Field(1.2, ge=0.0)
    # Seed of the generator: the dataset itself is the same for every trial seed.
    seed: int = 0


class DataConfig(_Section):
    """Which dataset, which split, which images, which augmentation."""

    model_config = _FROZEN

    # Dataset: a key of connectome.training.DATASETS.
    name: str = "cifar10"
    # Directory searched first for the dataset's files (then $CONNECTOME_DATA, ./data, system dirs).
    root: str | None = None
    # Training images held out for validation; None = the dataset's paper split, 0 = train on all.
    val_size: int | None = Field(None, ge=0)
    # Train on this many images drawn from the training split by the trial seed; None = all.
    train_subset: int | None = Field(None, ge=1)
    # Seed of the train/val split: fixed across trials so every trial validates on the same images.
    split_seed: int = 0
    # Pad-4 random crop + horizontal flip (the paper's "+"); None = the dataset's default.
    augment: bool | None = None
    # Let torchvision download missing files (needs network access).
    download: bool = True
    # SVHN only: add the 531k "extra" images to training (the paper trains on train + extra;
    # off by default because extra_32x32.mat is 1.3 GB; the paper's SVHN study files set it).
    svhn_extra: bool = False
    # Shape of the `synthetic` dataset; ignored by the others.
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    # Text data (name: text) only, each left out of dumps at its default so earlier trial ids stay.
    # A UTF-8 file read as bytes; None = the default corpus (the King James Bible, scripts/get_data.sh).
    path: str | None = Field(None, exclude_if=lambda v: v is None)
    # Without a path: "kjv" (the default corpus) or "generated" (made-up sentences in memory, for smoke tests).
    corpus: Literal["kjv", "generated"] = Field("kjv", exclude_if=lambda v: v == "kjv")
    # Contiguous splits of the bytes: train, then validation, then test (the last fractions).
    val_fraction: float = Field(0.05, gt=0.0, lt=1.0, exclude_if=lambda v: v == 0.05)
    test_fraction: float = Field(0.05, gt=0.0, lt=1.0, exclude_if=lambda v: v == 0.05)
    # Context windows evaluated per validation / test pass, evenly spaced over the split and the
    # same for every trial of a study (so variants are compared on the same text); None = all.
    eval_windows: int | None = Field(64, ge=1, exclude_if=lambda v: v == 64)

    @model_validator(mode="after")
    def _text_keys_for_text(self) -> "DataConfig":
        if self.name != "text" and (self.path is not None or self.corpus != "kjv"):
            raise ValueError(f"data.path and data.corpus are read by data.name text only, not {self.name!r}")
        if self.path is not None and self.corpus != "kjv":
            raise ValueError(f"data.path names the corpus; drop data.corpus: {self.corpus}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(f"data.val_fraction {self.val_fraction} + data.test_fraction {self.test_fraction} "
                             "leave no training text; keep their sum below 1")
        return self


class TrainConfig(_Section):
    """Optimiser, schedule, precision and execution options of one trial."""

    model_config = _FROZEN

    # Passes over the training set (paper: 300 on CIFAR, 40 on SVHN).
    epochs: int = Field(300, ge=1)
    # Mini-batch size (paper: 64).
    batch_size: int = Field(64, ge=1)
    # Initial learning rate (paper: 0.1).
    lr: float = Field(0.1, gt=0.0)
    # SGD momentum (paper: 0.9, Nesterov).
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    # Nesterov momentum (paper: yes; torch only applies it when momentum > 0).
    nesterov: bool = True
    # L2 weight decay on every parameter (paper: 1e-4).
    weight_decay: float = Field(1e-4, ge=0.0)
    # "step": lr * gamma at each milestone; "cosine": per-step cosine to 0; "constant".
    schedule: Literal["step", "cosine", "constant", "wsd"] = "step"
    # Step schedule: fractions of the epochs where lr is multiplied by gamma (paper: 50%, 75%).
    milestones: tuple[float, ...] = (0.5, 0.75)
    # Step schedule: factor applied to lr at each milestone (paper: divide by 10).
    gamma: float = Field(0.1, gt=0.0)
    # Linear warm-up from 0 over this many epochs (0 = none, as in the paper).
    warmup_epochs: float = Field(0.0, ge=0.0)
    # Label smoothing of the training loss (0 = plain cross-entropy, as in the paper).
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    # Autocast precision: fp32 (none), bf16 (CPU with native bf16, or GPU), fp16 (GPU only);
    # "auto" = bf16 where the hardware has it natively, else fp32, resolved when the trial is
    # planned (connectome/training/resolve.py) and recorded, so it is part of the trial id.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # "auto" (in a study: the GPU Ray assigned, else CPU; elsewhere CUDA if available), "cpu",
    # "cuda", "cuda:1" (not in studies: Ray picks the GPU; see docs/gpu.md).
    device: str = "auto"
    # Channels-last memory format for activations and weights; "auto" = where it was measured
    # faster (CPU: fp32, or bf16 with small block maps), resolved when the trial is planned.
    channels_last: bool | Literal["auto"] = "auto"
    # Compile the model with torch.compile (needs a C++ compiler on CPU); "auto" = when the trial
    # is long enough to pay the compile time back, resolved when the trial is planned.
    compile: bool | Literal["auto"] = "auto"
    # Deterministic algorithms (and cuDNN/cuBLAS settings) so a seed gives the same record on
    # CUDA too; slower, and it changes numerics, so it is part of the trial id (docs/gpu.md).
    deterministic: bool = False
    # CPU threads; None = the trial's resources ($OMP_NUM_THREADS as set by Ray, else CPU affinity).
    threads: int | None = Field(None, ge=1)
    # Batch size of validation and test passes (no gradients, so larger is fine).
    eval_batch_size: int = Field(500, ge=1)
    # Record zero-cost proxies (proxy.* columns) of the initialised model: about 5 training steps.
    # Left out of dumps at its default, so trial ids and config files of earlier studies stay the same.
    proxies: bool = Field(True, exclude_if=lambda v: v is True)
    # Evaluate the test set after every epoch (test_loss/test_acc/test_error of the epoch rows,
    # and the record's test_error_at_best_val). Written to the results only: never reported to
    # Tune, Optuna or a scheduler, so no choice is ever made on test data.
    test_each_epoch: bool = False
    # Language models (data.name text) only; each left out of dumps at its default. There an
    # "epoch" of the record is one evaluation interval: the budget is split into `epochs` of them.
    # Budget: optimizer steps, or tokens (steps = ceil(tokens / (batch_size * context))).
    steps: int | None = Field(None, ge=1, exclude_if=lambda v: v is None)
    tokens: int | None = Field(None, ge=1, exclude_if=lambda v: v is None)
    # Linear warm-up over this many steps (the LM recipe's; warmup_epochs is the image recipe's).
    warmup_steps: int = Field(0, ge=0, exclude_if=lambda v: v == 0)
    # Schedule "wsd" (warmup-stable-decay): the last `decay_fraction` of the steps decay linearly to 0.
    decay_fraction: float = Field(0.2, gt=0.0, le=1.0, exclude_if=lambda v: v == 0.2)
    # AdamW's betas (the LM recipe; the image recipe is SGD).
    betas: tuple[float, float] = Field((0.9, 0.95), exclude_if=lambda v: tuple(v) == (0.9, 0.95))
    # Clip the gradients' global norm to this (None: no clipping).
    grad_clip: float | None = Field(None, gt=0.0, exclude_if=lambda v: v is None)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if any(not 0.0 <= b < 1.0 for b in v):
            raise ValueError(f"betas are two numbers in [0, 1), got {list(v)}")
        return v

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < x < 1.0 for x in v) or list(v) != sorted(v):
            raise ValueError(f"milestones are increasing fractions of the epochs in (0, 1), got {list(v)}")
        return v


class TrialConfig(_Section):
    """One trial: architecture, data, training recipe and seed."""

    model_config = _FROZEN

    # The network; a mapping may name a preset (see connectome.architecture.PRESETS).
    arch: ArchConfig = Field(default_factory=ArchConfig)
    # The dataset and its split, subsampling and augmentation.
    data: DataConfig = Field(default_factory=DataConfig)
    # Optimiser, schedule, precision and execution.
    train: TrainConfig = Field(default_factory=TrainConfig)
    # Fixes initialisation, data order, subsampling, augmentation and dropout masks.
    seed: int = 0

    @field_validator("arch", mode="before")
    @classmethod
    def _apply_preset(cls, v: Any) -> Any:
        # make_arch applies the preset's values under the explicit keys.
        if isinstance(v, Mapping):
            try:
                return make_arch(**v)
            except ConfigError as err:
                raise ValueError(str(err)) from err
        return v

    @model_validator(mode="after")
    def _budget_for_language_models(self) -> "TrialConfig":
        lm_keys = [k for k in LM_TRAIN_KEYS if getattr(self.train, k) != TrainConfig.model_fields[k].default]
        if self.data.name != "text" and lm_keys:
            raise ValueError(f"train.{', train.'.join(lm_keys)}: language-model keys, but data.name is "
                             f"{self.data.name!r} (they need data.name: text)")
        if self.data.name == "text":
            if (self.train.steps is None) == (self.train.tokens is None):
                raise ValueError("data.name text needs exactly one budget: train.steps or train.tokens")
            if self.arch.family != "decoder":
                raise ValueError(f"data.name text trains a language model: set arch.family: decoder "
                                 f"(got {self.arch.family!r})")
        elif self.arch.family == "decoder":
            raise ValueError(f"arch.family decoder is a language model: set data.name: text (got {self.data.name!r})")
        if self.train.schedule == "wsd" and self.data.name != "text":
            raise ValueError("train.schedule wsd is the language-model recipe's (data.name: text)")
        return self

    @model_validator(mode="after")
    def _compile_without_recomputation(self) -> "TrialConfig":
        # A checkpointed node mutates its module, so Dynamo breaks the graph at every node:
        # correct but slower than either option alone.
        if self.train.compile and self.arch.memory_efficient:
            raise ValueError("train.compile and memory_efficient do not combine (the compiled graph breaks "
                             "at every recomputed node); choose one")
        return self


# TrainConfig keys only the language-model recipe reads.
LM_TRAIN_KEYS = ("steps", "tokens", "warmup_steps", "decay_fraction", "betas", "grad_clip")


def lm_steps(cfg: "TrialConfig") -> int:
    """Optimizer steps of a language-model trial: train.steps, or train.tokens over the tokens a step sees."""
    if cfg.train.steps is not None:
        return cfg.train.steps
    per_step = cfg.train.batch_size * cfg.arch.context
    return max(1, -(-(cfg.train.tokens or 0) // per_step))


def make_trial_config(config: TrialConfig | Mapping[str, Any], source: str = "trial config") -> TrialConfig:
    """Validate a mapping (or pass a TrialConfig through); errors become one ConfigError."""
    if isinstance(config, TrialConfig):
        return config
    try:
        return TrialConfig.model_validate(dict(config))
    except ValidationError as err:
        raise ConfigError(f"invalid {source}: {describe_validation(err, 'see connectome/training/config.py')}") from err
