"""Random wiring per generator: settings named from their options, tables and strip plot from the trials."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection

from connectome.analysis.document import Document
from connectome.analysis.wiring import generator_columns, plot_wiring, wiring_section, wiring_table


def _trials() -> pd.DataFrame:
    """dense x 2 seeds and residual x 1; ER p=0.2 and BA m=1 with 3 and 2 graphs (one training seed each)."""
    rows = [("dense", None, None, None, None, 0, 0.83), ("dense", None, None, None, None, 1, 0.81),
            ("residual", None, None, None, None, 0, 0.80)]
    rows += [("random", "er", 0.2, None, g, 0, acc) for g, acc in enumerate([0.84, 0.82, 0.80])]
    rows += [("random", "ba", None, 1.0, g, 0, acc) for g, acc in enumerate([0.78, 0.76])]
    frame = pd.DataFrame(rows, columns=["pattern", "pattern_options.model", "pattern_options.p",
                                        "pattern_options.m", "pattern_options.seed", "seed", "test_acc"])
    frame["trial_id"] = [f"t{i}" for i in range(len(frame))]
    frame["params"] = 60_000 + 100 * np.arange(len(frame))
    return frame


def test_settings_name_the_model_and_its_options_but_not_the_graph_seed():
    named = generator_columns(_trials())
    assert named["setting"].tolist() == ["dense", "dense", "residual", *["er p=0.2"] * 3, *["ba m=1"] * 2]
    assert named["generator"].tolist() == ["dense", "dense", "residual", "er", "er", "er", "ba", "ba"]


def test_table_has_references_first_then_generators_with_their_spread():
    table = wiring_table(_trials(), "test_acc").set_index("setting")
    assert table.index.tolist() == ["dense", "residual", "ba m=1", "er p=0.2"]
    er = table.loc["er p=0.2"]
    assert (er["graphs"], er["trials"], er["min"], er["max"]) == (3, 3, 0.80, 0.84)
    assert er["mean"] == pytest.approx(0.82) and er["std"] == pytest.approx(0.02)
    assert er["ci_low"] < 0.80 < 0.84 < er["ci_high"]  # t interval over 3 graphs: wider than their range
    assert table.loc["dense", "graphs"] == 1 and table.loc["dense", "trials"] == 2  # seeds are not graphs
    assert np.isnan(table.loc["residual", "ci_low"])
    assert table.loc["ba m=1", ["params_min", "params_max"]].tolist() == [60_600, 60_700]


def test_strip_plot_draws_every_random_trial_and_each_references_mean():
    ax = plot_wiring(_trials(), "test_acc").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ba m=1", "er p=0.2"]
    dots = sorted(np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if isinstance(c, PathCollection)]))
    means = sorted(seg[0][1] for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments())
    assert means == pytest.approx([0.77, 0.82])
    assert dots == pytest.approx([0.76, 0.78, 0.80, 0.82, 0.84])
    references = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()}
    assert references == pytest.approx({"dense (2 trials, mean)": 0.82, "residual (1 trial)": 0.80})


def test_section_is_left_out_without_random_trials(tmp_path):
    doc = Document()
    wiring_section(doc, _trials().query("pattern != 'random'"), "test_acc", tmp_path)
    assert not doc.to_markdown(tmp_path).strip() and not (tmp_path / "figures").exists()
    wiring_section(doc, _trials(), "test_acc", tmp_path)
    text = doc.to_markdown(tmp_path)
    assert "## Random wiring per generator" in text and "er p=0.2" in text
    assert (tmp_path / "figures" / "random_wiring.png").stat().st_size > 1000
