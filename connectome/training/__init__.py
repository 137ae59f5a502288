"""Training one trial: dataset registry, the paper's recipe, records and checkpoints."""
from __future__ import annotations

from connectome.training.config import DataConfig, SyntheticConfig, TrainConfig, TrialConfig, make_trial_config
from connectome.training.datasets import DATASETS, load_splits
from connectome.training.trainer import train_trial

__all__ = [
    "DATASETS", "DataConfig", "SyntheticConfig", "TrainConfig", "TrialConfig", "load_splits",
    "make_trial_config", "train_trial",
]
