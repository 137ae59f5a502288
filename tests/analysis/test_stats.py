"""summarize, pareto and compare on frames built to have known answers."""
import numpy as np
import pandas as pd
import pytest

from connectome.analysis import compare, crossed_factors, pareto, summarize
from connectome.analysis.stats import configurations, pareto_configs
from connectome.errors import ConfigError


def test_summarize_counts_means_and_interval():
    df = pd.DataFrame({"pattern": ["dense"] * 3 + ["partial"] * 2 + ["plain"],
                       "score": [1.0, 2.0, 3.0, 5.0, 7.0, 4.0]})  # unbounded: no clipping
    out = summarize(df, by="pattern", metric="score").set_index("pattern")
    assert out.loc["dense", "count"] == 3 and out.loc["dense", "mean"] == 2.0
    assert out.loc["dense", "std"] == pytest.approx(1.0)
    # t(0.975, 2) = 4.302653; half width = t * s / sqrt(n)
    assert out.loc["dense", "ci_high"] - 2.0 == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6)
    assert out.loc["partial", "ci_low"] == pytest.approx(6.0 - 12.706205 * np.sqrt(2) / np.sqrt(2), rel=1e-6)
    assert np.isnan(out.loc["plain", "ci_low"])  # one value: no interval


def test_interval_of_a_fraction_stays_inside_zero_one():
    df = pd.DataFrame({"pattern": ["dense"] * 2, "test_error": [0.35, 0.65]})  # t(0.975, 1) = 12.7
    out = summarize(df, by="pattern").iloc[0]
    assert (out["ci_low"], out["ci_high"]) == (0.0, 1.0)
    wide = summarize(df.rename(columns={"test_error": "score"}), by="pattern", metric="score").iloc[0]
    assert wide["ci_low"] < -1.0 and wide["ci_high"] > 2.0


def test_paired_difference_of_fractions_stays_inside_minus_one_one():
    df = pd.DataFrame({"pattern": ["dense", "partial"] * 2, "seed": [0, 0, 1, 1],
                       "test_error": [0.1, 0.6, 0.7, 0.4]})  # diffs -0.5, 0.3: t(1) interval is huge
    c = compare(df, a="dense", b="partial")
    assert (c.ci_low, c.ci_high) == (-1.0, 1.0) and c.mean_diff == pytest.approx(-0.1)


def test_summarize_adds_group_means_of_sizes():
    df = pd.DataFrame({"pattern": ["a", "a", "b"], "params": [10, 20, 5], "test_error": [0.2, 0.3, 0.4]})
    out = summarize(df, by="pattern", means=("params",))
    assert list(out.columns) == ["pattern", "count", "mean", "std", "ci_low", "ci_high", "params"]
    assert out["params"].tolist() == [15.0, 5.0]


def test_pareto_front_is_over_configurations_not_lucky_seeds():
    # b's seed 1 alone would beat a at equal size; over seeds b is worse and a is the front.
    df = pd.DataFrame({"pattern": ["a", "a", "b", "b"], "growth": [4] * 4, "seed": [0, 1, 0, 1],
                       "params": [100, 100, 100, 100], "test_error": [0.20, 0.22, 0.35, 0.10]})
    assert pareto(df)["pattern"].tolist() == ["b"]  # per trial: the lucky seed wins
    front = pareto_configs(df)
    assert front["pattern"].tolist() == ["a"] and front["count"].tolist() == [2]
    assert front["test_error"].iloc[0] == pytest.approx(0.21)
    assert 0.0 <= front["ci_low"].iloc[0] < 0.21 < front["ci_high"].iloc[0] <= 1.0
    table = configurations(df)
    assert len(table) == 2 and "seed" not in table


def test_a_trial_proposed_twice_is_not_two_seeds():
    df = pd.DataFrame({"number": [0, 1, 2], "trial_id": ["t1", "t1", "t2"], "pattern": ["a"] * 3,
                       "seed": [0, 0, 1], "params": [5] * 3, "test_error": [0.2, 0.2, 0.4]})
    table = configurations(df)
    assert table["count"].tolist() == [2] and table["test_error"].iloc[0] == pytest.approx(0.3)


def test_configurations_of_a_frame_without_factors_keep_each_row():
    df = pd.DataFrame({"number": [0, 1, 2], "params": [1, 2, 3], "test_acc": [0.5, 0.6, 0.4]})
    front = pareto_configs(df, y="test_acc", maximize_y=True)
    assert front["params"].tolist() == [1, 2] and front["count"].tolist() == [1, 1]


def test_summarize_leaves_out_missing_metric():
    df = pd.DataFrame({"pattern": ["dense"] * 3, "test_error": [1.0, np.nan, 3.0]})
    assert summarize(df, by=["pattern"])["count"].tolist() == [2]


def test_interval_covers_true_mean_at_nominal_rate():
    rng = np.random.default_rng(0)
    draws, n, true_mean = 2000, 5, 0.25
    df = pd.DataFrame({"draw": np.repeat(np.arange(draws), n),
                       "test_error": rng.normal(true_mean, 0.03, size=draws * n)})
    out = summarize(df, by="draw")
    coverage = ((out["ci_low"] <= true_mean) & (true_mean <= out["ci_high"])).mean()
    # binomial s.d. of the rate over 2000 draws is ~0.005: 0.95 +- 0.015 is three of them
    assert 0.935 <= coverage <= 0.965
    wrong = summarize(df, by="draw", confidence=0.5)
    assert ((wrong["ci_low"] <= true_mean) & (true_mean <= wrong["ci_high"])).mean() < 0.6


def test_pareto_hand_made_set():
    df = pd.DataFrame({
        "name":       ["a", "b", "c", "d", "e", "f", "g"],
        "params":     [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 1.0],
        "test_error": [0.5, 0.3, 0.4, 0.3, 0.1, 0.1, 0.6],
    })
    # c is beaten by b (same size, lower error), d by b (smaller, same error), g by a;
    # e and f are identical, so neither dominates the other.
    assert pareto(df)["name"].tolist() == ["a", "b", "e", "f"]


def test_pareto_maximise_and_missing_values():
    df = pd.DataFrame({"name": list("abcd"), "params": [1, 2, 3, np.nan],
                       "test_acc": [0.6, 0.8, 0.7, 0.99]})
    assert pareto(df, y="test_acc", maximize_y=True)["name"].tolist() == ["a", "b"]
    assert pareto(df, y="test_acc", maximize_x=True, maximize_y=True)["name"].tolist() == ["c", "b"]


def paired_frame(diff: float, noise: float, seeds: int = 8, seed: int = 0) -> pd.DataFrame:
    """dense and partial at two growths over shared seeds; partial - dense = diff + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for growth in (4, 8):
        for s in range(seeds):
            base = 0.3 - 0.01 * growth + rng.normal(0, 0.05)  # seed effect, shared by the pair
            rows.append({"pattern": "dense", "growth": growth, "seed": s, "test_error": base})
            rows.append({"pattern": "partial", "growth": growth, "seed": s, "m": "8",
                         "test_error": base + diff + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_compare_recovers_constructed_difference():
    c = compare(paired_frame(diff=0.02, noise=0.002), a="dense", b="partial")
    assert c.n_pairs == 16 and len(c.missing) == 0 and c.note == ""
    assert c.matched_on == ("seed", "growth")  # m is set by the pattern, not crossed with it
    assert c.ci_low < -0.02 < c.ci_high and c.mean_diff == pytest.approx(-0.02, abs=0.002)
    assert c.p_value < 1e-6
    # the seed effect (s.d. 0.05) dwarfs the difference: unpaired rows could not show it
    assert c.pairs["a"].std() > 10 * c.pairs["diff"].std()


def test_compare_without_difference_is_not_significant():
    c = compare(paired_frame(diff=0.0, noise=0.01, seed=3))
    assert c.p_value > 0.05 and c.ci_low < 0 < c.ci_high


def test_compare_reports_missing_pairs():
    df = paired_frame(diff=0.02, noise=0.002)
    drop_partial = (df["pattern"] == "partial") & (df["seed"] == 1) & (df["growth"] == 4)
    df.loc[(df["pattern"] == "dense") & (df["seed"] == 5) & (df["growth"] == 8), "test_error"] = np.nan
    c = compare(df[~drop_partial])
    assert c.n_pairs == 14
    missing = c.missing.sort_values("seed").to_dict("records")
    assert missing == [{"seed": 1, "growth": 4, "absent": "partial"},
                       {"seed": 5, "growth": 8, "absent": "dense"}]
    assert "2 pair(s) missing" in c.note


def test_compare_matches_on_missing_factor_values():
    df = paired_frame(diff=0.02, noise=0.002)
    df["m"] = np.where(df["growth"] == 4, None, df["m"])  # a crossed key that is sometimes absent
    c = compare(df, match=["m"])
    assert c.n_pairs == 8 and len(c.missing) == 8  # partial m=8 (growth 8) has no dense twin
    assert "8 key(s) had several trials" in c.note  # dense at both growths share a key


def test_compare_single_pair_has_no_test():
    df = paired_frame(diff=0.02, noise=0.002, seeds=1)
    c = compare(df, match=["growth"])
    assert c.n_pairs == 2
    c = compare(df[df["growth"] == 4])
    assert c.n_pairs == 1 and np.isnan(c.p_value) and "only 1 pair" in c.note


def test_compare_unknown_level_lists_known_ones():
    with pytest.raises(ConfigError, match="levels present: dense, partial"):
        compare(paired_frame(diff=0.0, noise=0.01), b="residual")


def test_crossed_factors_leave_out_level_determined_columns():
    df = paired_frame(diff=0.0, noise=0.01)
    df["train.lr"] = 0.1
    # a budget-matched growth differs between the patterns but is fixed within each one
    df["depth"] = np.where(df["pattern"] == "dense", 10, 13)
    assert crossed_factors(df, "pattern") == ["growth"]


def test_compare_notes_a_degenerate_test():
    c = compare(paired_frame(diff=0.02, noise=0.0))
    assert c.mean_diff == pytest.approx(-0.02) and "t-test is degenerate" in c.note


def test_a_key_given_in_some_trials_of_a_level_and_absent_in_others_is_crossed():
    from connectome.analysis.stats import crossed_factors

    frame = pd.DataFrame({"pattern": ["residual"] * 2 + ["dense"] * 2, "stochastic_depth": [np.nan, 0.5, np.nan, np.nan],
                          "seed": [0, 0, 0, 0]})
    assert crossed_factors(frame, "pattern") == ["stochastic_depth"]
