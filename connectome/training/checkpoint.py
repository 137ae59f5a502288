"""Torch files of a trial directory (names: connectome.store.layout.TrialFiles), written atomically.

A reader (a resumed trial, the study runner, a crash) sees either the old file or the new one,
never a partial write; a checkpoint damaged some other way is moved aside and the trial restarts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from connectome.files import atomic_write, write_atomic
from connectome.store.layout import set_aside
from connectome.testing.faults import fault


def save_torch(obj: Any, path: Path) -> None:
    """torch.save, atomically."""
    with atomic_write(path) as f:
        torch.save(obj, f)
        fault("checkpoint")  # test hook: a kill between the write and the rename


def save_text(text: str, path: Path) -> None:
    """A text file, atomically."""
    write_atomic(path, text)


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint's state on CPU, or None if there is none (weights_only: tensors and plain data)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, corrupt or not a checkpoint at all
        set_aside(path, f"unreadable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})")
        return None
    if not isinstance(state, dict) or not {"model", "optimizer", "epochs"} <= set(state):
        set_aside(path, "not a connectome checkpoint")
        return None
    return state
