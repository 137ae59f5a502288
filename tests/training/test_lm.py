"""The language-model recipe: decay groups, schedules, fixed evaluation windows, bits per byte, divergence."""
import math

import pytest
import torch

from connectome import build_model, make_arch
from connectome.joins import Join
from connectome.training import lm
from connectome.training.config import TrainConfig, make_trial_config
from connectome.training.plan import plan_trial
from connectome.training.trainer import train_trial


def _config(seed=0, **train):
    return make_trial_config({
        "arch": {"family": "decoder", "pattern": "denseformer", "growth": 16, "heads": 2, "sublayers": 4, "context": 16},
        "data": {"name": "text", "corpus": "generated", "eval_windows": 8},
        "train": {"steps": 6, "epochs": 2, "batch_size": 4, "lr": 0.01, "weight_decay": 0.1, "warmup_steps": 2,
                  "schedule": "cosine", "grad_clip": 1.0, "eval_batch_size": 8, "precision": "fp32",
                  "channels_last": False, "compile": False, "threads": 1, **train},
        "seed": seed})


@pytest.mark.parametrize("pattern", ["denseformer", "dense-concat"])
def test_connections_norms_biases_and_embeddings_are_not_decayed(pattern):
    model = build_model(make_arch(family="decoder", pattern=pattern, growth=16, heads=2, sublayers=4, context=8,
                                  tie_embeddings=False))
    decay, keep = lm.decay_groups(model, 0.1)
    assert (decay["weight_decay"], keep["weight_decay"]) == (0.1, 0.0)
    kept = {id(p) for p in keep["params"]}
    joins = [p for m in model.modules() if isinstance(m, Join) for p in m.parameters()]
    assert joins or pattern != "denseformer"
    assert all(id(p) in kept for p in joins)
    assert id(model.stem.embedding.weight) in kept
    assert all(id(p) in kept for p in model.parameters() if p.ndim < 2)
    assert all(p.ndim == 2 for p in decay["params"]) and decay["params"]
    assert len(decay["params"]) + len(keep["params"]) == len(list(model.parameters()))


def test_a_tied_head_is_one_parameter_in_one_group():
    model = build_model(make_arch(family="decoder", pattern="prenorm", growth=16, heads=2, sublayers=2, context=8))
    groups = lm.decay_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_warmup_then_cosine_and_warmup_stable_decay():
    cosine = TrainConfig(lr=1.0, warmup_steps=10, schedule="cosine")
    assert [lm.lr_at_step(cosine, s, 110) for s in (0, 9)] == [0.1, 1.0]
    assert lm.lr_at_step(cosine, 60, 110) == pytest.approx(0.5) and lm.lr_at_step(cosine, 110, 110) == pytest.approx(0)
    wsd = TrainConfig(lr=1.0, warmup_steps=10, schedule="wsd", decay_fraction=0.2)
    assert [lm.lr_at_step(wsd, s, 100) for s in (50, 80)] == pytest.approx([1.0, 1.0])
    assert lm.lr_at_step(wsd, 90, 100) == pytest.approx(0.5)


def test_intervals_split_the_budget_and_tokens_set_the_steps():
    cfg = _config(steps=7, epochs=3)
    assert [list(lm.interval_steps(cfg, e)) for e in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert lm.lm_steps(_config(steps=None, tokens=4 * 16 * 5 + 1)) == 6  # ceil over batch_size x context


def test_evaluation_windows_are_fixed_evenly_spaced_and_the_same_for_every_seed():
    assert lm.window_starts(100, 11, None) == list(range(0, 90, 10))
    assert lm.window_starts(100, 11, 3) == [0, 44, 89]
    a, b = (lm.load_text(plan_trial(_config(seed=s)), torch.device("cpu")) for s in (0, 1))
    assert torch.equal(a.val, b.val) and torch.equal(a.test, b.test) and a.val.shape == (8, 17)
    assert not torch.equal(a.val, a.test)


def test_a_trial_records_nats_and_bits_per_byte_per_interval():
    record = train_trial(_config())
    assert record["status"] == "completed" and record["epochs_completed"] == 2
    for row in record["epochs"]:
        assert row["val_bpb"] == pytest.approx(row["val_loss"] / math.log(2))
        assert row["train_bpb"] == pytest.approx(row["train_loss"] / math.log(2)) and row["tokens_per_s"] > 0
    assert record["test_bpb"] == pytest.approx(record["test_loss"] / math.log(2))
    assert record["best_val_bpb"] == min(r["val_bpb"] for r in record["epochs"])
    assert record["final_val_bpb"] == record["epochs"][-1]["val_bpb"]
    assert record["epochs"][-1]["train_loss"] < math.log(256)  # below a uniform guess after 6 steps


def test_a_non_finite_loss_is_the_diverged_status(monkeypatch):
    step = lm.train_step
    monkeypatch.setattr(lm, "train_step", lambda trial, x, y: (lambda loss, logits: (loss * math.nan, logits))(
        *step(trial, x, y)))
    record = train_trial(_config())
    assert record["status"] == "diverged" and "non-finite training loss" in record["error"]
