"""The span curve: metric per max_span with intervals, the unlimited (dense) level as a reference."""
import numpy as np
import pandas as pd
import pytest

from connectome.analysis.document import Document
from connectome.analysis.span import SPAN, plot_span_curve, span_section, span_table, span_trials


def _trials(spans=(1, 2, 4, None), seeds=3) -> pd.DataFrame:
    rows = []
    for s in spans:
        for seed in range(seeds):
            acc = (0.9 if s is None else 0.8 + 0.02 * s) + 0.01 * seed
            rows.append({"trial_id": f"span-{s}-{seed}", "pattern": "span", SPAN: s, "seed": seed,
                         "params": 1000 * (s or 8), "test_acc": acc})
    return pd.DataFrame(rows)


def test_table_has_a_mean_and_interval_per_span_and_the_unlimited_level():
    table = span_table(_trials(), "test_acc")
    assert table[SPAN].tolist()[:3] == [1, 2, 4] and np.isnan(table[SPAN].iloc[3])
    assert table["count"].tolist() == [3, 3, 3, 3]
    assert table["test_acc"].tolist() == pytest.approx([0.83, 0.85, 0.89, 0.91])
    assert (table["ci_low"] < table["test_acc"]).all() and (table["test_acc"] < table["ci_high"]).all()
    assert table["params"].tolist() == [1000, 2000, 4000, 8000]


def test_section_draws_the_curve(tmp_path):
    doc = Document()
    span_section(doc, _trials(), "test_acc", tmp_path)
    text = doc.to_markdown(tmp_path)
    assert "## Test accuracy against the longest skip kept" in text and "no limit" in text
    assert (tmp_path / "figures" / "span_curve.png").stat().st_size > 1000


def test_a_dense_trial_is_the_unlimited_end_and_other_factors_make_separate_curves(tmp_path):
    trials = pd.concat([_trials((1, 2)).assign(growth=4), _trials((1, 2)).assign(growth=8),
                        _trials((None,)).assign(pattern="dense", growth=4)])
    table = span_table(span_trials(trials), "test_acc")
    assert table.groupby("growth").size().to_dict() == {4: 3, 8: 2}
    doc = Document()
    span_section(doc, trials, "test_acc", tmp_path)
    assert (tmp_path / "figures" / "span_curve.png").exists()


def test_no_section_without_two_finite_spans(tmp_path):
    for trials in (_trials((1, None)), _trials().drop(columns=SPAN), _trials().assign(pattern="random")):
        doc = Document()
        span_section(doc, trials, "test_acc", tmp_path)
        assert doc.to_markdown(tmp_path) == "" or "longest skip" not in doc.to_markdown(tmp_path)
    assert not (tmp_path / "figures").exists()


def test_a_growth_set_per_span_by_a_budget_is_one_curve_not_a_group_per_span():
    growth = {1: 8, 2: 6, 4: 5, None: 4}  # as studies/span_curve_matched.yaml resolves its 60k budget
    trials = pd.concat([_trials((s,)).assign(growth=g) for s, g in growth.items()])
    table = span_table(span_trials(trials), "test_acc")
    assert table["count"].tolist() == [3, 3, 3, 3]  # one row per span, not per (growth, span)
    assert table["growth"].tolist() == [8, 6, 5, 4]  # shown beside its span
    ax = plot_span_curve(table, "test_acc", []).axes[0]
    curve = ax.containers[0].lines[0]
    assert len(ax.containers) == 1 and list(curve.get_xdata()) == [1, 2, 4]
