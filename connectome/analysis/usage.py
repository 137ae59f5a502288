"""How strongly each layer uses each earlier source, from trained weights (Figure 4 of arXiv 1608.06993 v1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from connectome.errors import ConfigError


def normalize_usage(matrix: np.ndarray) -> np.ndarray:
    """Divide each row (one layer) by its largest entry: 1 marks the source it uses most.

    Rows are layers 1..n and columns sources 0..n-1 as in `ConnectomeNet.source_usage()`;
    NaN (no edge) stays NaN, and a row of zeros stays zero.
    """
    matrix = np.asarray(matrix, dtype=float)
    with np.errstate(invalid="ignore"):
        peak = np.nanmax(np.where(np.isnan(matrix), -np.inf, matrix), axis=1, keepdims=True)
    peak = np.where(np.isfinite(peak) & (peak > 0), peak, 1.0)
    return matrix / peak


def model_usage(model) -> list[np.ndarray]:
    """Per-block normalised usage matrices of a `ConnectomeNet`."""
    return [normalize_usage(m) for m in model.source_usage()]


def load_trial_model(trial_dir: str | Path):
    """The trained `ConnectomeNet` of a trial folder (spec.json + model.pt), on the CPU."""
    import torch

    from connectome.executor import ConnectomeNet
    from connectome.spec import NetworkSpec

    trial_dir = Path(trial_dir)
    spec_file, weights = trial_dir / "spec.json", trial_dir / "model.pt"
    for file in (spec_file, weights):
        if not file.exists():
            raise ConfigError(f"{file} not found: the trial kept no trained model (did it finish?)")
    model = ConnectomeNet(NetworkSpec.from_json(spec_file.read_text()))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def trial_usage(trial_dir: str | Path) -> list[np.ndarray]:
    """Per-block normalised usage matrices of a trained trial."""
    return model_usage(load_trial_model(trial_dir))

