"""Study test helpers: a small study file in a temp dir (the shared Ray head is in tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def smoke_dict(tmp_path: Path, **changes) -> dict:
    """studies/smoke.yaml as a dict with its output in tmp_path and top-level keys replaced."""
    data = yaml.safe_load((REPO / "studies" / "smoke.yaml").read_text())
    data["output"] = str(tmp_path / "results")
    data.update(changes)
    return data


def write_study(tmp_path: Path, data: dict, name: str = "study.yaml") -> Path:
    """Write a study dict as YAML and return its path."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
