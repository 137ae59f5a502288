"""Fixtures of the analysis tests: a fake results directory (see fake_results.py)."""
from pathlib import Path

import pytest
from analysis.fake_results import make_results_dir


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return make_results_dir(tmp_path)
