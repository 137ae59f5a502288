"""The study settings a results directory was produced with, read without validating them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from connectome.overrides import load_yaml
from connectome.store.layout import StudyDir


def read_study(results_dir: str | Path) -> dict[str, Any]:
    """study.resolved.json (the study after --set overrides), else study.yaml, else {}."""
    sd = StudyDir(results_dir)
    try:
        if sd.resolved_file.exists():
            data = json.loads(sd.resolved_file.read_text())
        else:
            data = load_yaml(sd.study_file.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def search_settings(results_dir: str | Path) -> dict[str, Any]:
    """The `search` section of the study ({} when unknown)."""
    search = read_study(results_dir).get("search")
    return search if isinstance(search, dict) else {}


def budget_params(results_dir: str | Path) -> int | None:
    """The parameter count every candidate was matched to (`budget.params`), or None without a budget."""
    budget = read_study(results_dir).get("budget")
    params = budget.get("params") if isinstance(budget, dict) else None
    return params if isinstance(params, int) else None
