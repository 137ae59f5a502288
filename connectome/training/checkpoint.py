"""Trial directory files, each written atomically (temp file in the same directory + os.replace).

A reader (a resumed trial, the study runner, a crash) sees either the old file or the new one,
never a partial write.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from connectome.files import atomic_write, write_atomic

# Resumable state, written after every epoch and removed once the trial has finished.
CHECKPOINT = "checkpoint.pt"
# The validated TrialConfig, written before training starts.
CONFIG = "config.json"
# Final artefacts.
RECORD = "record.json"
SPEC = "spec.json"
MODEL = "model.pt"


def save_torch(obj: Any, path: Path) -> None:
    """torch.save, atomically."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def save_json(obj: Any, path: Path) -> None:
    """JSON (NaN kept as NaN, as Python and pandas read it), atomically."""
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=1, sort_keys=False).encode())


def save_text(text: str, path: Path) -> None:
    """A text file, atomically."""
    write_atomic(path, text)


def load_json(path: Path) -> Any | None:
    """Parsed JSON, or None if the file does not exist."""
    return json.loads(path.read_text()) if path.exists() else None


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint's state on CPU, or None if there is none (weights_only: tensors and plain data)."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
