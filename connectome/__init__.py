"""connectome: neural-architecture connectivity studies.

Wiring is a networkx DAG per block (`connectome.patterns`), frozen into a spec
(`connectome.spec`), compiled into one PyTorch module (`connectome.executor`).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from connectome.architecture import PRESETS, ArchConfig, make_arch  # noqa: E402
from connectome.builder import build_model, build_spec  # noqa: E402
from connectome.complexity import complexity, match_budget  # noqa: E402
from connectome.patterns import PATTERNS, register_pattern  # noqa: E402
from connectome.spec import BlockSpec, NetworkSpec  # noqa: E402


def train_trial(config: Any, **kwargs: Any) -> dict:
    """Train one trial; see `connectome.training.train_trial` (imported lazily)."""
    from connectome.training import train_trial as _train_trial

    return _train_trial(config, **kwargs)


__all__ = [
    "ArchConfig", "BlockSpec", "NetworkSpec", "PATTERNS", "PRESETS", "build_model", "build_spec",
    "complexity", "make_arch", "match_budget", "register_pattern", "train_trial", "__version__",
]
