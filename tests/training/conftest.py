"""Tiny trials on generated data: a 2-block DenseNet, 8x8 images, a few hundred of them."""
from __future__ import annotations

import copy
from typing import Any

import pytest

TINY: dict[str, Any] = {
    "arch": {"block_layers": [2, 2], "growth": 4},
    "data": {"name": "synthetic", "synthetic": {"train": 320, "test": 64, "size": 8, "channels": 3, "classes": 4}},
    "train": {"epochs": 3, "batch_size": 32, "threads": 1, "eval_batch_size": 128},
    "seed": 0,
}


def merge(base: dict, over: dict) -> dict:
    """Nested dict update, returning a new dict."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def tiny():
    """tiny(**sections) -> the tiny trial config with nested overrides."""
    return lambda **over: merge(TINY, over)
