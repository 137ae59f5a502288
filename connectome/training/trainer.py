"""Train one trial (one architecture, one dataset, one seed) and return its flat record.

The loop follows the paper's recipe (SGD + Nesterov, step lr, weight decay, batch 64) on
data held as tensors on the device. Every epoch ends with an atomic checkpoint in
`trial_dir`; calling `train_trial` again on the same directory resumes from it, and because
each epoch's randomness is derived from (seed, epoch), the resumed run ends with the same
record as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

import connectome
from connectome.architecture import ArchConfig
from connectome.errors import ConfigError, ConnectomeError
from connectome.executor import ConnectomeNet
from connectome.spec import NetworkSpec
from connectome.store import layout
from connectome.store.record import FINAL_STATUSES, config_columns, flatten, semantic_config
from connectome.proxies import trial_proxy_columns
from connectome.topology import topology_columns
from connectome.training.allocator import keep_freed_memory
from connectome.training import checkpoint as ckpt
from connectome.training import device as devices
from connectome.training.device import resolve_device  # noqa: F401 - re-exported for callers
from connectome.training.config import TrainConfig, TrialConfig, make_trial_config
from connectome.training.catalog import dataset_info
from connectome.training.datasets import DataSplits, load_splits
from connectome.training.plan import PlannedTrial, plan_trial
from connectome.training.resolve import use_compile_cache

# Steps between checks for a non-finite loss (each check syncs the device).
DIVERGENCE_CHECK_EVERY = 20
__all__ = ["train_trial", "setup_trial", "evaluate", "config_columns", "flatten"]

EpochCallback = Callable[[dict], Any]
# on_batch(epoch, batch, batches, images): after each training step, epoch and batch 1-based,
# `images` trained so far in this epoch. Called with plain ints only: it never syncs the device.
BatchCallback = Callable[[int, int, int, int], Any]


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class Recipe:
    """How one kind of trial loads its data, optimises, trains an epoch, tests and summarises its epochs.

    The dataset's catalog entry names its recipe (DatasetInfo.recipe): "images" is the paper's
    classification recipe below, "lm" the language-model recipe (connectome/training/lm.py).
    """

    load: Callable[[PlannedTrial, torch.device], Any]
    optimizer: Callable[[nn.Module, TrainConfig], torch.optim.Optimizer]
    epoch: Callable[["Trial", int, "BatchCallback | None"], dict]
    test: Callable[["Trial"], dict]
    summary: Callable[[list[dict]], dict]
    proxies: Callable[["Trial"], dict]


RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str, recipe: Recipe) -> None:
    """Add a training recipe under the name a DatasetInfo.recipe gives."""
    RECIPES[name] = recipe


def recipe_of(cfg: TrialConfig) -> Recipe:
    """The recipe of the trial's dataset."""
    return RECIPES[dataset_info(cfg.data.name).recipe]


@dataclass
class Trial:
    """Everything one run needs, built once by `setup_trial` from the planned trial."""

    plan: PlannedTrial
    data: Any  # DataSplits (images) or the recipe's own (connectome.training.lm.TextSplits)
    device: torch.device
    model: nn.Module  # the module to save (uncompiled)
    forward: nn.Module  # the module to call (compiled or not)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler

    @property
    def cfg(self) -> TrialConfig:
        return self.plan.config

    @property
    def arch(self) -> ArchConfig:
        """The arch built: classes, in_channels and dropout resolved (connectome.training.plan)."""
        return self.plan.arch

    @property
    def spec(self) -> NetworkSpec:
        return self.plan.spec

    @property
    def recipe(self) -> Recipe:
        return recipe_of(self.cfg)


@dataclass
class Progress:
    """What a checkpoint restores besides weights: finished epochs and elapsed times."""

    epochs: list[dict] = field(default_factory=list)
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0


@dataclass
class Elapsed:
    """A trial's wall and CPU time so far: its earlier attempts' (in the checkpoint) plus this one's.

    CPU time is this process's (every thread's), a cost that load from other jobs does not inflate.
    """

    wall0: float = field(default_factory=time.perf_counter)
    cpu0: float = field(default_factory=time.process_time)

    def wall(self, progress: Progress) -> float:
        return progress.wall_time_s + time.perf_counter() - self.wall0

    def cpu(self, progress: Progress) -> float:
        return progress.cpu_time_s + time.process_time() - self.cpu0


# ---------------------------------------------------------------- public entry point


def train_trial(
    config: TrialConfig | Mapping[str, Any],
    *,
    trial_dir: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
    on_setup: EpochCallback | None = None,
) -> dict:
    """Train one trial and return its record (see docs/design.md, "Trial record").

    `config` is a TrialConfig or a nested mapping of the same keys. With `trial_dir` (files
    named by connectome.store.layout.TrialFiles), `config.json` is written there first unless
    the study planner did, a checkpoint after every epoch (resumed from on the next call), and
    at the end `result.json` (the flat row and the epochs), `spec.json` and `model.pt` (final
    weights only); the checkpoint is then deleted (a `failed` trial keeps it, so the next call
    resumes). A directory whose result is already `completed`/`diverged` returns that record
    without training; a corrupt result or checkpoint is moved aside and treated as missing. `on_epoch(epoch_dict)` runs after each epoch's
    checkpoint (with `wall_time_s`, the trial's wall time so far, added to the row); returning True
    stops the trial early (status `completed`, `stopped_early`). `on_setup(columns)` runs once
    the model is built, with the record's configuration and model columns known before training
    (resolved arch, params, flops, graph hash), e.g. to record a trial a scheduler stops.
    `on_batch` (see BatchCallback) runs after every training step, for progress inside long epochs.

    Config and dataset problems raise ConnectomeError before training; anything failing during
    training gives status `failed` with the error text, a NaN/inf loss status `diverged`; a CUDA
    error that leaves the process's CUDA context unusable is re-raised (the process must go).
    Accuracies and errors are fractions in [0, 1]. The caller's RNG state, backend flags and
    current GPU are left as they were.
    """
    plan = plan_trial(make_trial_config(config))  # "auto" execution choices made concrete, the network planned
    cfg = plan.config
    files = layout.TrialFiles(Path(trial_dir)) if trial_dir is not None else None
    study = None
    if files is not None:
        finished, study = _check_dir(files, cfg)
        if finished is not None:
            return finished
    started = Elapsed()
    record = _config_record(cfg, files, study)
    progress = Progress()
    trial = None
    device = devices.resolve_device(cfg.train.device, devices.ray_gpu_ids())
    if device.type == "cpu":
        keep_freed_memory()  # activations stay mapped between steps (connectome/training/allocator.py)
    with devices.trial_scope(device, deterministic=cfg.train.deterministic, compiled=cfg.train.compile):
        try:
            trial = setup_trial(plan, device)
            if files is not None and not files.config.exists():  # only a config that set up cleanly claims it
                layout.write_trial_config(files, cfg.model_dump(mode="json"), planned=plan.to_json())
            record.update(_model_record(trial))
            if on_setup is not None:
                on_setup({k: v for k, v in record.items() if k != "epochs"})
            progress = _restore(trial, files)
            stopped = _run_epochs(trial, progress, files, on_epoch, started, on_batch)
            record.update(trial.recipe.test(trial), status="completed", stopped_early=stopped)
        except Diverged as err:
            record.update(status="diverged", error=str(err))
        except ConnectomeError:
            if trial is None:
                raise  # bad config or missing data: the caller's to fix, not a trial outcome
            record.update(status="failed", error=traceback.format_exc(limit=-3))
        except Exception as err:
            if devices.is_sticky_cuda_error(err):
                raise  # every later CUDA call of this process fails: let Ray replace the worker
            record.update(status="failed", error=traceback.format_exc(limit=-3))
        record.update(_progress_record(progress, started, recipe_of(cfg)))
        if files is not None:
            _write_artefacts(files, record, trial)
        trial = None  # the model and data go before the cache is emptied
    devices.release_memory(device, compiled=cfg.train.compile)
    return record


# ---------------------------------------------------------------- setup


def setup_trial(planned: PlannedTrial | TrialConfig, device: torch.device | None = None) -> Trial:
    """Device, threads, data, model, optimiser: all checks that can fail before training."""
    plan = planned if isinstance(planned, PlannedTrial) else plan_trial(planned)
    cfg, train = plan.config, plan.config.train
    device = device or devices.resolve_device(train.device, devices.ray_gpu_ids())
    devices.configure_backends(train.deterministic, train.precision, device)
    devices.check_precision(train.precision, device)
    devices.limit_memory(device, devices.ray_gpu_fraction())
    torch.set_num_threads(resolve_threads(train))
    recipe = recipe_of(cfg)
    data = recipe.load(plan, device)
    devices.seed_rng(cfg.seed, device)  # initialisation
    model = ConnectomeNet(plan.spec, memory_efficient=plan.arch.memory_efficient).to(device)
    if train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = recipe.optimizer(model, train)
    if train.compile:
        torch._dynamo.reset()  # a reused worker's earlier trials would count towards the recompile limit
        use_compile_cache()
    forward = torch.compile(model) if train.compile else model
    scaler = torch.amp.GradScaler(device.type, enabled=train.precision == "fp16")
    return Trial(plan, data, device, model, forward, optimizer, scaler)


def resolve_threads(train: TrainConfig) -> int:
    """CPU threads: explicit, else $OMP_NUM_THREADS (Ray sets it to the trial's CPUs), else affinity."""
    if train.threads is not None:
        return train.threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return devices.usable_cpus()


def load_images(plan: PlannedTrial, device: torch.device) -> DataSplits:
    """The image dataset split as the trial's config fixes it, checked against the plan."""
    data = load_splits(plan.config.data, plan.config.seed, device)
    check_data(plan, data)
    return data


def sgd(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """The paper's SGD with Nesterov momentum and weight decay on every parameter."""
    # foreach: PyTorch's default on CUDA; on CPU its default is a Python loop over the parameters,
    # 2.2x slower for fashion_small.yaml's 49 tensors (1.1 against 0.5 ms a step) for the same bits.
    return torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                           nesterov=train.nesterov and train.momentum > 0, weight_decay=train.weight_decay, foreach=True)


def check_data(plan: PlannedTrial, data: DataSplits) -> None:
    """The loaded data must be what the trial was planned for (shape, classes, augmentation)."""
    if (plan.input_size, plan.arch.classes) != (data.input_size, data.classes):
        raise ConfigError(f"dataset {plan.config.data.name!r} loaded as (C, H, W) {data.input_size} with "
                          f"{data.classes} classes, but the trial was planned for {plan.input_size} with "
                          f"{plan.arch.classes} classes (connectome/training/catalog.py disagrees with the files)")


def autocast(trial: Trial) -> contextlib.AbstractContextManager:
    """The trial's precision as an autocast context (none for fp32)."""
    precision = trial.cfg.train.precision
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(trial.device.type, dtype=dtype)


# ---------------------------------------------------------------- the loop


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of one epoch's shuffling, augmentation and dropout (independent of resumes)."""
    return (seed * 1_000_003 + epoch * 7_919 + 1) % (2**63)


def lr_at(train: TrainConfig, epoch: float) -> float:
    """Learning rate at a (fractional) epoch: warm-up, then step / cosine / constant."""
    if epoch < train.warmup_epochs:
        return train.lr * epoch / train.warmup_epochs
    if train.schedule == "cosine":
        return 0.5 * train.lr * (1 + math.cos(math.pi * epoch / train.epochs))
    if train.schedule == "step":
        # Milestones are fractions of training: with 300 epochs lr drops at epochs 150 and 225;
        # with 1 epoch, halfway through it (rounding to whole epochs would drop it at step 0).
        passed = sum(1 for m in train.milestones if epoch >= m * train.epochs)
        return train.lr * train.gamma**passed
    return train.lr


def _run_epochs(trial: Trial, progress: Progress, files: layout.TrialFiles | None,
                on_epoch: EpochCallback | None, started: Elapsed, on_batch: BatchCallback | None = None) -> bool:
    """Epochs from the first unfinished one; True if on_epoch asked to stop early."""
    for epoch in range(len(progress.epochs), trial.cfg.train.epochs):
        row = trial.recipe.epoch(trial, epoch, on_batch)
        progress.epochs.append(row)
        progress.train_time_s += row["seconds"]
        spent = {"wall_time_s": started.wall(progress), "cpu_time_s": started.cpu(progress)}
        if files is not None:
            ckpt.save_torch(_checkpoint_state(trial, progress, **spent), files.checkpoint)
        # the callback also gets the trial's wall and CPU time so far (what a scheduler's stop costs)
        if on_epoch is not None and on_epoch({**row, **spent}) is True:
            return epoch + 1 < trial.cfg.train.epochs
    return False


def run_epoch(trial: Trial, epoch: int, on_batch: BatchCallback | None = None) -> dict:
    """One pass over the training set, then validation; the epoch's row of the record."""
    t0 = time.perf_counter()
    train_loss, train_acc = _train_pass(trial, epoch, on_batch)
    t_train = time.perf_counter() - t0
    val_loss, val_acc = evaluate(trial, trial.data.val_x, trial.data.val_y)
    row = dict(epoch=epoch + 1, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
               val_acc=val_acc, lr=lr_at(trial.cfg.train, epoch),
               seconds=time.perf_counter() - t0,
               images_per_s=len(trial.data.train_y) / max(t_train, 1e-9))
    if trial.cfg.train.test_each_epoch:  # after `seconds`: timings stay comparable without it
        row.update(_test_record(trial))
    return row


def _train_pass(trial: Trial, epoch: int, on_batch: BatchCallback | None = None) -> tuple[float, float]:
    """SGD over one shuffled epoch; mean loss and accuracy; raises Diverged on NaN/inf."""
    train, data = trial.cfg.train, trial.data
    gen = torch.Generator().manual_seed(epoch_seed(trial.cfg.seed, epoch))
    devices.seed_rng(epoch_seed(trial.cfg.seed, epoch) + 1, trial.device)  # dropout masks
    order = torch.randperm(len(data.train_y), generator=gen)
    sizes = [len(b) for b in order.split(train.batch_size)]
    # The whole epoch's crops and flips, drawn now and copied once: no host-device sync per step.
    draws = data.draw_augment(gen, sizes)
    batches = devices.to_device(order, trial.device).split(train.batch_size)
    loss_sum = torch.zeros((), device=trial.device)
    correct = torch.zeros((), device=trial.device, dtype=torch.long)
    trial.forward.train()
    for step, idx in enumerate(batches):
        _set_lr(trial.optimizer, lr_at(train, epoch + step / len(batches)))
        start = step * train.batch_size
        aug = draws[start:start + len(idx)] if draws is not None else None
        x, y = data.batch(idx, aug)  # (B, C, H, W), (B,)
        loss, logits = train_step(trial, x, y)
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        if step % DIVERGENCE_CHECK_EVERY == 0 or step == len(batches) - 1:
            check_finite(loss_sum, epoch, step)
        if on_batch is not None:
            on_batch(epoch + 1, step + 1, len(batches), start + len(idx))
    n = len(data.train_y)
    return loss_sum.item() / n, correct.item() / n


def train_step(trial: Trial, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and update on one batch."""
    if trial.cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(trial):
        logits = _forward_for(trial, len(x), trial.cfg.train.batch_size)(x)  # (B, classes)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=trial.cfg.train.label_smoothing)
    trial.optimizer.zero_grad(set_to_none=True)
    trial.scaler.scale(loss).backward()
    trial.scaler.step(trial.optimizer)
    trial.scaler.update()
    return loss, logits


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_finite(loss_sum: torch.Tensor, epoch: int, step: int) -> None:
    if not torch.isfinite(loss_sum):
        raise Diverged(f"non-finite training loss in epoch {epoch + 1}, by step {step + 1}")


def _forward_for(trial: Trial, n: int, full: int) -> nn.Module:
    """The compiled module for full batches; a ragged last batch runs eagerly (no recompile for its size)."""
    return trial.forward if n == full else trial.model


@torch.inference_mode()
def evaluate(trial: Trial, x_all: torch.Tensor, y_all: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on uint8 images; NaN for an empty set."""
    if len(y_all) == 0:
        return math.nan, math.nan
    trial.forward.eval()
    size = trial.cfg.train.eval_batch_size
    # Summed on the device (float64, as Python floats were) and read once: one sync per pass.
    loss_sum = torch.zeros((), device=trial.device, dtype=torch.float64)
    correct = torch.zeros((), device=trial.device, dtype=torch.long)
    for start in range(0, len(y_all), size):
        x, y = trial.data.normalize(x_all[start:start + size]), y_all[start:start + size]
        if trial.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(trial):
            logits = _forward_for(trial, len(y), size)(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    return loss_sum.item() / len(y_all), correct.item() / len(y_all)


# ---------------------------------------------------------------- checkpoints and the trial dir


def _checkpoint_state(trial: Trial, progress: Progress, wall_time_s: float, cpu_time_s: float) -> dict:
    return dict(model=trial.model.state_dict(), optimizer=trial.optimizer.state_dict(),
                scaler=trial.scaler.state_dict(), epochs=progress.epochs,
                train_time_s=progress.train_time_s, wall_time_s=wall_time_s, cpu_time_s=cpu_time_s)


def _restore(trial: Trial, files: layout.TrialFiles | None) -> Progress:
    """Load the trial's checkpoint into the trial (if any); the progress it holds."""
    state = ckpt.load_checkpoint(files.checkpoint) if files is not None else None
    if state is None:
        return Progress()
    trial.model.load_state_dict(state["model"])
    trial.optimizer.load_state_dict(state["optimizer"])
    trial.scaler.load_state_dict(state["scaler"])
    # checkpoints written before CPU time was recorded lack it: the resumed trial counts its own
    return Progress(epochs=list(state["epochs"]), train_time_s=state["train_time_s"],
                    wall_time_s=state["wall_time_s"], cpu_time_s=state.get("cpu_time_s", 0.0))


def _check_dir(files: layout.TrialFiles, cfg: TrialConfig) -> tuple[dict | None, str | None]:
    """Refuse a trial dir of another config; (its final record if any, the study it belongs to)."""
    saved = layout.read_trial_config(files)
    if saved is not None and semantic_config(saved["config"]) != semantic_config(cfg.model_dump(mode="json")):
        raise ConfigError(f"{files.dir} holds a trial with a different config ({files.config}); "
                          "use a fresh trial_dir or delete that directory")
    entry = layout.read_trial_result(files)
    if entry is not None and entry["row"].get("status") in FINAL_STATUSES:
        return {**entry["row"], "epochs": entry.get("epochs") or []}, None
    return None, (saved or {}).get("study")


def _write_artefacts(files: layout.TrialFiles, record: dict, trial: Trial | None) -> None:
    """result.json always; spec.json and model.pt when a model exists; drop a finished checkpoint."""
    if trial is not None:
        ckpt.save_text(trial.spec.to_json(indent=1), files.spec)
        weights = {k: v.detach().to("cpu", copy=True) for k, v in trial.model.state_dict().items()}
        ckpt.save_torch(weights, files.model)
    layout.write_trial_result(files, {k: v for k, v in record.items() if k != "epochs"}, record["epochs"])
    if record["status"] != "failed":  # a failed trial keeps its checkpoint, to resume
        files.checkpoint.unlink(missing_ok=True)


# ---------------------------------------------------------------- the record


def _config_record(cfg: TrialConfig, files: layout.TrialFiles | None, study: str | None) -> dict:
    """Identity and configuration columns, with every metric present (NaN until known)."""
    nan = math.nan
    return {
        "trial_id": files.trial_id if files is not None else None, "study": study,
        **config_columns(cfg), "status": None, "error": None, "stopped_early": False,
        "params": None, "flops": None, "activations": None, "graph_hash": None,
        "test_acc": nan, "test_error": nan, "test_loss": nan, "test_error_at_best_val": None,
        "best_val_acc": nan, "best_val_epoch": None, "final_val_acc": nan, "final_train_loss": nan,
        "epochs_completed": 0, "wall_time_s": nan, "cpu_time_s": nan, "train_time_s": nan,
        "device": None, "threads": None, "torch_version": torch.__version__,
        "connectome_version": connectome.__version__, "hostname": platform.node(),
    }


def _model_record(trial: Trial) -> dict:
    """Columns known once data and model exist: resolved arch, complexity, device."""
    return {
        **trial.plan.record_columns(), "device": str(trial.device),
        "threads": torch.get_num_threads(), **topology_columns(trial.spec), **trial.recipe.proxies(trial),
    }


def _test_record(trial: Trial) -> dict:
    """Test metrics of the final model."""
    loss, acc = evaluate(trial, trial.data.test_x, trial.data.test_y)
    return {"test_loss": loss, "test_acc": acc, "test_error": 1.0 - acc}


def _progress_record(progress: Progress, started: Elapsed, recipe: Recipe) -> dict:
    """Per-epoch rows and the summaries the recipe derives from them."""
    rows = progress.epochs
    return {
        **recipe.summary(rows),
        "epochs_completed": len(rows), "train_time_s": progress.train_time_s,
        "wall_time_s": started.wall(progress), "cpu_time_s": started.cpu(progress),
        "epochs": [dict(r) for r in rows],
    }


def image_summary(rows: list[dict]) -> dict:
    """Best and final validation accuracy, and the test error at the best epoch when it was measured."""
    vals = [(r["val_acc"], r["epoch"]) for r in rows if not math.isnan(r["val_acc"])]
    best = max(vals, key=lambda v: (v[0], -v[1])) if vals else (math.nan, None)
    at_best = next((r for r in rows if r["epoch"] == best[1]), {})
    return {
        "best_val_acc": best[0], "best_val_epoch": best[1],
        # the paper's SVHN number: test error of the epoch chosen on validation (needs test_each_epoch)
        "test_error_at_best_val": at_best.get("test_error"),  # None when not measured, like best_val_epoch
        "final_val_acc": rows[-1]["val_acc"] if rows else math.nan,
        "final_train_loss": rows[-1]["train_loss"] if rows else math.nan,
    }


# Looked up when called, so a test that replaces run_epoch replaces the recipe's.
register_recipe("images", Recipe(load=load_images, optimizer=sgd, epoch=lambda *args: run_epoch(*args),
                                 test=lambda trial: _test_record(trial), summary=image_summary,
                                 proxies=trial_proxy_columns))
# The language-model recipe registers itself (it builds on the pieces above).
from connectome.training import lm as _lm  # noqa: E402,F401
