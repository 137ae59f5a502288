"""The analysis package's public names load on first use: statistics without the figures' imports."""
from __future__ import annotations

import subprocess
import sys

import pytest

import connectome.analysis as analysis


def test_every_public_name_resolves_to_its_module_object():
    for name in analysis.__all__:
        value = getattr(analysis, name)
        assert getattr(sys.modules[analysis._MODULE_OF[name]], name) is value
    assert sorted(analysis.__all__) == sorted(analysis._MODULE_OF)


def test_the_summary_statistics_do_not_import_matplotlib_or_optuna():
    # the driver's summary uses summarize() and the answer; the report's imports cost seconds per run
    code = ("import sys; from connectome.analysis.stats import summarize; "
            "from connectome.analysis.answer import study_answer; "
            "print(sorted(m for m in ('matplotlib', 'optuna', 'connectome.training', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_function"):
        analysis.no_such_function  # noqa: B018
