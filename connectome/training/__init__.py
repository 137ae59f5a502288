"""Training one trial: dataset registry, the planned trial, the paper's recipe, records and checkpoints.

The configs and the catalog are torch-free and imported here; the trainer and the loaders
(torch) are imported on first use, so planning can import `connectome.training` without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from connectome.training.catalog import DATASETS
from connectome.training.config import DataConfig, SyntheticConfig, TrainConfig, TrialConfig, make_trial_config

# Public names whose modules import torch: loaded on first access (PEP 562).
_LAZY = {"load_splits": "connectome.training.datasets", "train_trial": "connectome.training.trainer"}

__all__ = [
    "DATASETS", "DataConfig", "SyntheticConfig", "TrainConfig", "TrialConfig", "load_splits",
    "make_trial_config", "train_trial",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'connectome.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
