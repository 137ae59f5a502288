"""Each decoder wiring against prenorm: paired differences, cost ratios, ranking stability, gain against depth."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from connectome.analysis.baseline import (baseline_section, differences, gain_by_level, order_flips, per_seed,
                                          rank_table, win_fractions)
from connectome.analysis.document import Document
from connectome.analysis.results import Results

# test_bpb per (wiring, seed): dense-concat is lower in every seed; denseformer and prenorm swap in seed 2.
TEST = {"prenorm": [2.70, 2.80, 2.60], "denseformer": [2.72, 2.85, 2.55], "dense-concat": [2.50, 2.60, 2.45]}
VAL = {"prenorm": [2.75, 2.85, 2.65], "denseformer": [2.70, 2.90, 2.60], "dense-concat": [2.55, 2.66, 2.50]}
PARAMS = {"prenorm": 1000, "denseformer": 1010, "dense-concat": 1100}
TOKENS = {"prenorm": [100.0, 100.0, 100.0], "denseformer": [90.0, 95.0, 80.0], "dense-concat": [50.0, 50.0, 50.0]}


def _trials(sublayers: tuple[int, ...] = (8,)) -> pd.DataFrame:
    rows = []
    for depth in sublayers:
        for pattern, values in TEST.items():
            for seed, test in enumerate(values):
                rows.append({"trial_id": f"{pattern}-{depth}-{seed}", "pattern": pattern, "sublayers": depth,
                             "seed": seed, "status": "completed", "test_bpb": test + depth / 100,
                             "best_val_bpb": VAL[pattern][seed], "params": PARAMS[pattern] * depth,
                             "activations": 10.0 if pattern == "prenorm" else 12.0,
                             "tokens_per_s": TOKENS[pattern][seed]})
    return pd.DataFrame(rows).assign(wiring=lambda t: t["pattern"])


def test_differences_are_the_paired_means_and_costs_the_ratios_over_the_same_pairs():
    table = differences(_trials(), "prenorm", ("best_val_bpb", "test_bpb")).set_index("wiring")
    assert list(table.index) == ["dense-concat", "denseformer"]  # the baseline is not a row
    diffs = np.subtract(TEST["denseformer"], TEST["prenorm"])
    c = table.loc["denseformer", "_test_bpb"]
    assert c.n_pairs == 3 and c.mean_diff == pytest.approx(diffs.mean())
    assert table.loc["denseformer", "test_bpb diff"].startswith(f"{diffs.mean():+.3f} [")
    assert table.loc["dense-concat", "_best_val_bpb"].mean_diff == pytest.approx(-0.18)
    ratios = np.divide(TOKENS["denseformer"], TOKENS["prenorm"])
    geometric = float(np.exp(np.log(ratios).mean()))
    assert table.loc["denseformer", "tokens_per_s vs prenorm"] == f"{geometric:.2f}x (0.80-0.95)"
    assert table.loc["dense-concat", "tokens_per_s vs prenorm"] == "0.50x"  # no spread: no range
    assert table.loc["dense-concat", "params vs prenorm"] == "1.10x"
    assert table.loc["denseformer", "activations vs prenorm"] == "1.20x"


def test_order_flips_count_the_seeds_on_each_side_of_every_pair():
    wide = per_seed(_trials(), "test_bpb")
    flips = order_flips(wide).set_index(["a", "b"])
    assert flips.loc[("dense-concat", "prenorm")].to_dict() == {"a lower": 3, "b lower": 0, "minority": 0}
    assert flips.loc[("denseformer", "prenorm")].to_dict() == {"a lower": 1, "b lower": 2, "minority": 1}
    wins = win_fractions(wide)
    assert wins.loc["denseformer", "prenorm"] == pytest.approx(1 / 3)
    assert wins.loc["prenorm", "denseformer"] == pytest.approx(2 / 3)
    assert list(wins.index) == ["dense-concat", "prenorm", "denseformer"]  # by mean metric
    ranks = rank_table(wide).set_index("wiring")
    assert ranks.loc["dense-concat", "mean_rank"] == 1
    assert ranks.loc["denseformer", "seed=2"] == 2 and ranks.loc["prenorm", "seed=2"] == 3


def test_a_crossed_depth_ranks_and_pairs_within_each_depth():
    trials = _trials((8, 16))
    wide = per_seed(trials, "test_bpb")
    assert list(wide.index.names) == ["seed", "sublayers"] and len(wide) == 6
    gains = gain_by_level(trials, "prenorm", "test_bpb", "sublayers")
    assert sorted(zip(gains["wiring"], gains["sublayers"])) == [
        ("dense-concat", 8), ("dense-concat", 16), ("denseformer", 8), ("denseformer", 16)]
    assert all(c.n_pairs == 3 for c in gains["_c"])
    at16 = gains[(gains["wiring"] == "dense-concat") & (gains["sublayers"] == 16)]["_c"].iloc[0]
    assert at16.mean_diff == pytest.approx(np.subtract(TEST["dense-concat"], TEST["prenorm"]).mean())


def _results(trials: pd.DataFrame, path: Path) -> Results:
    epochs = pd.DataFrame({"trial_id": trials["trial_id"], "epoch": 1, "tokens_per_s": trials["tokens_per_s"]})
    return Results(path=path, study="s", trials=trials.drop(columns=["wiring", "tokens_per_s"]), epochs=epochs,
                   missing=())


def test_the_section_tables_costs_ranks_and_draws_the_gain_against_depth(tmp_path, draw_only):
    draw_only("against_baseline", "gain_vs_sublayers")
    doc = Document()
    baseline_section(doc, _results(_trials((8, 16)), tmp_path), tmp_path)
    text = doc.to_markdown(tmp_path)
    assert "## Against prenorm" in text and "### Ranking across seeds" in text and "### Gain against sublayers" in text
    assert "| tokens_per_s vs prenorm |" in text and "_test_bpb" not in text  # the comparisons stay off the table
    assert "Of 3 pairs, 2 keep one order in every seed and 1 flip" in text
    for name in ("against_baseline", "ranking_stability", "gain_vs_sublayers"):
        assert (tmp_path / "figures" / f"{name}.png").exists()
    assert (tmp_path / "figures" / "against_baseline.png").read_bytes().startswith(b"\x89PNG")


def test_no_section_without_the_baseline_or_for_image_studies(tmp_path):
    doc = Document()
    baseline_section(doc, _results(_trials()[lambda t: t["pattern"] != "prenorm"], tmp_path), tmp_path)
    images = _trials().drop(columns=["test_bpb", "best_val_bpb"]).assign(test_error=0.1)
    baseline_section(doc, _results(images, tmp_path), tmp_path)
    assert doc.to_markdown(tmp_path).strip() == ""


def test_one_seed_draws_no_interval_and_says_so(tmp_path, text_only):
    doc = Document()
    one = _trials()[lambda t: t["seed"] == 0]
    baseline_section(doc, _results(one, tmp_path), tmp_path)
    text = doc.to_markdown(tmp_path)
    assert "one pair each (one seed): no interval" in text and "95% t interval;" not in text
    assert "### Ranking across seeds" not in text  # one seed ranks nothing across seeds
