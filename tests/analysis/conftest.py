"""Fixtures of the analysis tests: a fake results directory (see fake_results.py), built once per module."""
import shutil
from pathlib import Path

import pytest
from analysis.fake_results import make_results_dir


@pytest.fixture(scope="module")
def built_results(tmp_path_factory) -> Path:
    """The fake results directory, built once per module (its models take a while)."""
    return make_results_dir(tmp_path_factory.mktemp("built"))


@pytest.fixture
def results_dir(built_results: Path, tmp_path: Path) -> Path:
    """A copy of the module's fake results directory for one test, which may change it."""
    return Path(shutil.copytree(built_results, tmp_path / built_results.name))
