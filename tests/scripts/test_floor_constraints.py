"""scripts/floor_constraints.py: pyproject's floors as exact pins, and no dependency without a floor."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "floor_constraints.py"


def load_script():
    """The script as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("floor_constraints", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_core_dependency_is_pinned_to_its_floor():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    pins = dict(line.split("==") for line in out.splitlines())
    assert pins["ray"] == "2.41" and pins["torch"] == "2.5" and pins["pydantic"] == "2.12.2"
    assert len(pins) == len(load_script().tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


@pytest.mark.parametrize(("requirement", "pin"), [
    ("ray[tune]>=2.41", "ray==2.41"), ("numpy >= 1.23.2; python_version >= '3.11'", "numpy==1.23.2"),
    ("scipy>=1.10,!=1.11.0", "scipy==1.10"),
])
def test_floor_pin(requirement, pin):
    assert load_script().floor_pin(requirement) == pin


@pytest.mark.parametrize("requirement", ["torch", "torch<3", "torch==2.3", "torch~=2.3"])
def test_a_dependency_without_a_floor_is_refused(requirement):
    with pytest.raises(SystemExit, match="declares no floor"):
        load_script().floor_pin(requirement)
