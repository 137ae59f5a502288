"""The language-model recipe: byte windows of a contiguous corpus, AdamW, warm-up then cosine or WSD, clipping.

Registered as the trainer's "lm" recipe (connectome/training/trainer.py RECIPES) for data.name
text. An "epoch" of the record is one evaluation interval: the step budget (train.steps or
train.tokens) split into train.epochs parts, each ending with a pass over the fixed validation
windows. Losses are in nats per byte (cross-entropy over 256 byte values) and bits per byte
(nats / ln 2). Weight decay applies to weight matrices only: norms, biases, embeddings and every
parameter of a connection (a `connectome.joins.Join`) are not decayed, since decaying learned
wiring pulls every variant back toward no mixing.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from connectome.joins import Join
from connectome.training import device as devices
from connectome.training.config import TrainConfig, TrialConfig, lm_steps
from connectome.training.corpus import check_corpus, corpus_bytes, split_bounds
from connectome.training.plan import PlannedTrial
from connectome.training.trainer import (
    DIVERGENCE_CHECK_EVERY, BatchCallback, Recipe, Trial, _set_lr, autocast, check_finite, epoch_seed,
    register_recipe,
)

LN2 = math.log(2.0)


@dataclass(frozen=True)
class TextSplits:
    """A corpus on the device: the training bytes, and the fixed validation and test windows."""

    train: torch.Tensor  # (N,) uint8
    val: torch.Tensor  # (W, context + 1) uint8: inputs and next-byte targets
    test: torch.Tensor
    context: int


# The corpus this process read last (its corpus_key) -> bytes: a reused worker reads it once.
_LAST_CORPUS: dict[tuple[str, int, int], np.ndarray] = {}


def cached_corpus(key: tuple[str, int, int]) -> np.ndarray:
    """The corpus as uint8, read once per process while consecutive trials ask for the same one."""
    if key not in _LAST_CORPUS:
        _LAST_CORPUS.clear()
        _LAST_CORPUS[key] = np.frombuffer(corpus_bytes(key), dtype=np.uint8)
    return _LAST_CORPUS[key]


def window_starts(n: int, window: int, limit: int | None) -> list[int]:
    """Starts of the evaluation windows of a split of n bytes: all non-overlapping ones, or `limit` evenly spaced."""
    last = n - window
    every = list(range(0, last + 1, window - 1))
    if limit is None or limit >= len(every):
        return every
    return [i * last // max(limit - 1, 1) for i in range(limit)]


def windows(data: np.ndarray, starts: list[int], window: int) -> torch.Tensor:
    """(len(starts), window) uint8 rows of data."""
    return torch.from_numpy(np.stack([data[s:s + window] for s in starts]).copy())


def corpus_parts(cfg: TrialConfig) -> dict[str, np.ndarray]:
    """The trial's corpus cut into its train, val and test bytes."""
    data = cached_corpus(check_corpus(cfg.data, cfg.arch.context))
    return {name: data[start:stop] for name, (start, stop) in vars(split_bounds(len(data), cfg.data)).items()}


def eval_windows(part: np.ndarray, cfg: TrialConfig) -> torch.Tensor:
    """A split's fixed evaluation windows, (W, context + 1) uint8: inputs and next-byte targets (seed-free)."""
    window = cfg.arch.context + 1
    return windows(part, window_starts(len(part), window, cfg.data.eval_windows), window)


def load_text(plan: PlannedTrial, device: torch.device) -> TextSplits:
    """The trial's corpus split into train bytes and fixed validation / test windows."""
    cfg = plan.config
    parts = corpus_parts(cfg)
    evals = {name: eval_windows(parts[name], cfg) for name in ("val", "test")}
    return TextSplits(train=torch.from_numpy(parts["train"].copy()).to(device), val=evals["val"].to(device),
                      test=evals["test"].to(device), context=cfg.arch.context)


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's parameter groups: weight matrices decay; norms, biases, embeddings and connections do not."""
    decay, keep = [], []
    seen: set[int] = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue  # a tied LM head reuses the embedding's matrix
            seen.add(id(p))
            exempt = isinstance(module, (Join, nn.Embedding)) or p.ndim < 2
            (keep if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over decay_groups (foreach: one fused loop over the tensors, as the image recipe's SGD)."""
    return torch.optim.AdamW(decay_groups(model, train.weight_decay), lr=train.lr, betas=train.betas, foreach=True)


def lr_at_step(train: TrainConfig, step: int, total: int) -> float:
    """Learning rate of a step: linear warm-up, then cosine to 0, warmup-stable-decay, step or constant."""
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    return train.lr * LR_SHAPES[train.schedule](train, step, total)


LR_SHAPES = {
    "cosine": lambda t, s, n: 0.5 * (1 + math.cos(math.pi * min(1.0, (s - t.warmup_steps)
                                                               / max(n - t.warmup_steps, 1)))),
    # WSD (Hu et al. 2024, MiniCPM): constant, then the last decay_fraction of the steps linearly to 0.
    "wsd": lambda t, s, n: min(1.0, (1 - s / n) / t.decay_fraction),
    "step": lambda t, s, n: t.gamma ** sum(1 for m in t.milestones if s >= m * n),
    "constant": lambda t, s, n: 1.0,
}


def interval_steps(cfg: TrialConfig, epoch: int) -> range:
    """The optimizer steps of evaluation interval `epoch` (0-based): the budget split into train.epochs parts."""
    total = lm_steps(cfg)
    per = -(-total // cfg.train.epochs)
    return range(min(epoch * per, total), min((epoch + 1) * per, total))


def run_interval(trial: Trial, epoch: int, on_batch: BatchCallback | None = None) -> dict:
    """One evaluation interval: its training steps, then the validation windows; the record's epoch row."""
    t0 = time.perf_counter()
    steps = interval_steps(trial.cfg, epoch)
    loss, acc = _train_steps(trial, epoch, steps, on_batch)
    t_train = time.perf_counter() - t0
    val = evaluate_windows(trial, trial.data.val)
    tokens = len(steps) * trial.cfg.train.batch_size * trial.data.context
    row = dict(epoch=epoch + 1, train_loss=loss, train_bpb=loss / LN2, train_acc=acc, val_loss=val["loss"],
               val_bpb=val["bpb"], val_acc=val["acc"], lr=lr_at_step(trial.cfg.train, steps.start, lm_steps(trial.cfg)),
               seconds=time.perf_counter() - t0, images_per_s=math.nan, tokens_per_s=tokens / max(t_train, 1e-9))
    if trial.cfg.train.test_each_epoch:
        row.update(test_record(trial))
    return row


def _train_steps(trial: Trial, epoch: int, steps: range, on_batch: BatchCallback | None) -> tuple[float, float]:
    """The interval's steps on random training windows (drawn from seed and interval); mean loss and accuracy."""
    train, text = trial.cfg.train, trial.data
    gen = torch.Generator().manual_seed(epoch_seed(trial.cfg.seed, epoch))
    devices.seed_rng(epoch_seed(trial.cfg.seed, epoch) + 1, trial.device)  # dropout masks
    window, total = text.context + 1, lm_steps(trial.cfg)
    starts = torch.randint(0, len(text.train) - window + 1, (len(steps), train.batch_size), generator=gen)
    offsets = devices.to_device(starts, trial.device).unsqueeze(-1) + torch.arange(window, device=trial.device)
    loss_sum = torch.zeros((), device=trial.device)
    correct = torch.zeros((), device=trial.device, dtype=torch.long)
    trial.forward.train()
    for i, step in enumerate(steps):
        _set_lr(trial.optimizer, lr_at_step(train, step, total))
        batch = text.train[offsets[i]].long()  # (B, context + 1)
        loss, logits = train_step(trial, batch[:, :-1], batch[:, 1:])
        loss_sum += loss.detach()
        correct += (logits.argmax(-1) == batch[:, 1:]).sum()
        if i % DIVERGENCE_CHECK_EVERY == 0 or i == len(steps) - 1:
            check_finite(loss_sum, epoch, i)
        if on_batch is not None:
            on_batch(epoch + 1, i + 1, len(steps), (i + 1) * train.batch_size)
    n = max(len(steps), 1)
    return loss_sum.item() / n, correct.item() / (n * train.batch_size * text.context)


def train_step(trial: Trial, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, clipping and update on (B, T) inputs and next-byte targets."""
    with autocast(trial):
        logits = trial.forward(x)  # (B, T, vocab)
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    trial.optimizer.zero_grad(set_to_none=True)
    trial.scaler.scale(loss).backward()
    clip = trial.cfg.train.grad_clip
    if clip is not None:
        trial.scaler.unscale_(trial.optimizer)
        torch.nn.utils.clip_grad_norm_(trial.model.parameters(), clip, foreach=True)
    trial.scaler.step(trial.optimizer)
    trial.scaler.update()
    return loss, logits


@torch.inference_mode()
def evaluate_windows(trial: Trial, rows: torch.Tensor) -> dict[str, float]:
    """Mean next-byte loss (nats), bits per byte and accuracy over fixed (W, context + 1) windows."""
    trial.forward.eval()
    loss_sum = torch.zeros((), device=trial.device, dtype=torch.float64)
    correct = torch.zeros((), device=trial.device, dtype=torch.long)
    for chunk in rows.split(trial.cfg.train.eval_batch_size):
        chunk = chunk.long()
        with autocast(trial):
            logits = trial.forward(chunk[:, :-1]).float()
        loss_sum += F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum").double()
        correct += (logits.argmax(-1) == chunk[:, 1:]).sum()
    n = rows.shape[0] * (rows.shape[1] - 1)
    loss = loss_sum.item() / n
    return {"loss": loss, "bpb": loss / LN2, "acc": correct.item() / n}


def test_record(trial: Trial) -> dict:
    """Test metrics of the model (reported, never selected on)."""
    test = evaluate_windows(trial, trial.data.test)
    return {"test_loss": test["loss"], "test_bpb": test["bpb"], "test_acc": test["acc"],
            "test_error": 1.0 - test["acc"]}


def summary(rows: list[dict]) -> dict:
    """Best (lowest) and final validation bits per byte, and the best next-byte accuracy, of the intervals."""
    vals = [(r["val_bpb"], r["epoch"]) for r in rows if not math.isnan(r["val_bpb"])]
    best = min(vals, key=lambda v: (v[0], v[1])) if vals else (math.nan, None)
    accs = [r["val_acc"] for r in rows if not math.isnan(r["val_acc"])]
    return {"best_val_bpb": best[0], "best_val_epoch": best[1], "best_val_acc": max(accs) if accs else math.nan,
            "final_val_bpb": rows[-1]["val_bpb"] if rows else math.nan,
            "final_val_acc": rows[-1]["val_acc"] if rows else math.nan,
            "final_train_loss": rows[-1]["train_loss"] if rows else math.nan,
            "test_error_at_best_val": None}


register_recipe("lm", Recipe(load=load_text, optimizer=make_optimizer, epoch=run_interval, test=test_record,
                             summary=summary, proxies=lambda trial: {}))
