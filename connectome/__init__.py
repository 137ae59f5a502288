"""connectome: neural-architecture connectivity studies.

Wiring is a networkx DAG per block (`connectome.patterns`), frozen into a spec
(`connectome.spec`), compiled into one PyTorch module (`connectome.executor`), trained one
trial at a time (`connectome.training`) or many at once with Ray Tune (`connectome.study`).

Every public name below is imported on first use, so `import connectome` (and the CLI's
`--help`) does not pay for torch, Ray or pandas until they are needed.
"""
from __future__ import annotations

import importlib
from typing import Any

# The one source of the version: pyproject.toml reads it from here (tool.setuptools.dynamic).
__version__ = "0.1.0"

# Public name -> module that defines it. (`complexity` is not re-exported: its module has the
# same name, and importing the module would replace the function on this package.)
_EXPORTS = {
    "ArchConfig": "connectome.architecture",
    "PRESETS": "connectome.architecture",
    "make_arch": "connectome.architecture",
    "BlockSpec": "connectome.spec",
    "NetworkSpec": "connectome.spec",
    "PATTERNS": "connectome.patterns",
    "register_pattern": "connectome.patterns",
    "AGGREGATIONS": "connectome.aggregations",
    "register_aggregation": "connectome.aggregations",
    "build_spec": "connectome.builder",
    "build_model": "connectome.builder",
    "match_budget": "connectome.complexity",
    "ConnectomeNet": "connectome.executor",
    "load_torchvision_densenet": "connectome.interop",
    "TrialConfig": "connectome.training",
    "make_trial_config": "connectome.training",
    "train_trial": "connectome.training",
    "Study": "connectome.study",
    "load_study": "connectome.study",
    "run_study": "connectome.orchestration.driver",
    "load_plugins": "connectome.plugins",
    "ConnectomeError": "connectome.errors",
    "ConfigError": "connectome.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'connectome' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """Module attributes plus the lazily imported public names."""
    return sorted(set(globals()) | set(__all__))
