"""The answer in words: every number, sign and verdict is the paired comparison's, in points."""
import re

import numpy as np
import pandas as pd
import pytest

from connectome.analysis import compare
from connectome.analysis.answer import answer, best_configuration, comparison_sentence, study_answer


def _paired(diffs, base=(0.20, 0.25, 0.22), metric="test_error", params=(1000, 740), macs=(2000, 1140)):
    """dense and partial over len(diffs) seeds; partial's error = dense's - diff (so dense - partial = diff)."""
    rows = []
    for seed, (d, e) in enumerate(zip(diffs, base)):
        for pattern, error, p, m in (("dense", e, params[0], macs[0]), ("partial", e - d, params[1], macs[1])):
            value = 1 - error if metric == "test_acc" else error
            rows.append({"trial_id": f"{pattern}-{seed}", "pattern": pattern, "seed": seed, "status": "completed",
                         metric: value, "best_val_acc": 1 - error, "params": p, "flops": m})
    return pd.DataFrame(rows)


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[+-]?\d+\.\d\d(?!\d)", text)]


def test_an_unresolved_comparison_says_what_it_rules_out():
    trials = _paired([0.01, -0.02, 0.018])
    c = compare(trials, metric="test_error")
    assert c.ci_low < 0 < c.ci_high
    sentence = comparison_sentence(c, trials)
    mean, low, high = (100 * v for v in (c.mean_diff, c.ci_low, c.ci_high))
    assert sentence.text.startswith(f"dense - partial: test error {mean:+.2f} points [{low:+.2f}, {high:+.2f}] "
                                    f"(95% t, 3 paired seeds), p = {c.p_value:.2f}: ")
    assert sentence.kind == "unresolved"
    assert (f"no difference this study can resolve; it rules out dense being more than {-low:.2f} points better "
            f"or partial more than {high:.2f} points better.") in sentence.text
    assert "partial has 26% fewer parameters and 43% fewer multiply-adds." in sentence.text


@pytest.mark.parametrize("diffs, winner", [([0.03, 0.031, 0.029], "partial"), ([-0.03, -0.031, -0.029], "dense")])
def test_a_resolved_difference_names_the_better_level_and_its_bounds(diffs, winner):
    trials = _paired(diffs)
    c = compare(trials, metric="test_error")
    sentence = comparison_sentence(c, trials)
    low, high = sorted(abs(100 * v) for v in (c.ci_low, c.ci_high))
    assert sentence.kind == "resolved"
    assert f"a resolved difference: {winner} is better by between {low:.2f} and {high:.2f} points" in sentence.text
    assert "rules out" not in sentence.text
    assert _numbers(sentence.text)[0] == pytest.approx(100 * c.mean_diff, abs=0.005)


def test_the_verdict_follows_the_interval_not_the_p_value():
    """Over random draws, a comparison reads as resolved exactly when its interval leaves out 0."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        trials = _paired(list(rng.normal(0.01, 0.02, 3)))
        c = compare(trials, metric="test_error")
        kind = comparison_sentence(c, trials).kind
        assert kind == ("unresolved" if c.ci_low <= 0 <= c.ci_high else "resolved")


def test_an_accuracy_comparison_reads_as_the_same_error_sentence():
    diffs = [0.01, -0.02, 0.018]
    on_error = comparison_sentence(compare(_paired(diffs), metric="test_error"), _paired(diffs)).text
    acc = _paired(diffs, metric="test_acc")
    on_acc = comparison_sentence(compare(acc, metric="test_acc"), acc).text
    assert on_acc == on_error


def test_matched_sizes_are_said_when_the_study_used_a_budget():
    trials = _paired([0.01, -0.02, 0.018])
    text = comparison_sentence(compare(trials), trials, budget=300_000).text
    assert text.endswith(" The sizes are matched: the study sized every candidate to 300,000 parameters.")
    assert "fewer parameters" not in text
    same = _paired([0.01, -0.02, 0.018], params=(1000, 1000), macs=(2000, 2000))
    assert comparison_sentence(compare(same), same).text.endswith(" dense and partial have the same size (within 1%).")


def test_one_pair_gives_no_interval_and_no_verdict():
    trials = _paired([0.01])
    sentence = comparison_sentence(compare(trials), trials)
    assert sentence.kind == "untested" and "too few pairs for an interval, so no conclusion" in sentence.text
    assert "resolve" not in sentence.text


def test_one_line_per_comparison_and_a_search_answers_with_its_choice_on_validation():
    trials = _paired([0.01, -0.02, 0.018])
    extra = trials[trials["pattern"] == "dense"].assign(pattern="residual", trial_id=lambda f: "r" + f["trial_id"])
    three = pd.concat([trials, extra], ignore_index=True)
    lines = study_answer(three)
    assert [line.comparison.b for line in lines] == ["partial", "residual"]
    assert all("\n" not in line.text for line in lines)
    [best] = study_answer(three, search="optuna")
    assert best.kind == "best" and best.text.startswith("Best of 3 configuration(s), chosen on validation: ")


def test_the_best_configuration_is_chosen_on_validation_and_reported_on_test():
    trials = pd.DataFrame({"pattern": ["dense", "dense", "partial", "partial"], "seed": [0, 1, 0, 1],
                           "status": "completed", "test_error": [0.10, 0.12, 0.30, 0.32],
                           "best_val_acc": [0.60, 0.62, 0.90, 0.92]})
    sentence = best_configuration(trials, metric="test_error_pts")
    assert "chosen on validation: pattern=partial (best validation error 9.00 points)" in sentence.text
    assert "its test error is 31.00 points [" in sentence.text and "(95% t, 2 seeds)" in sentence.text
    assert "No trial recorded a validation accuracy" in best_configuration(trials.drop(columns="best_val_acc")).text


def test_only_completed_trials_count_and_a_study_without_results_says_so():
    trials = _paired([0.01, -0.02, 0.018])
    failed = trials.assign(status="failed", trial_id=lambda f: "x" + f["trial_id"], test_error=0.9)
    with_failures = pd.concat([trials, failed], ignore_index=True)
    assert [s.text for s in study_answer(with_failures)] == [s.text for s in study_answer(trials)]
    [none] = study_answer(trials.assign(status="failed"))
    assert none.kind == "untested" and "no answer yet" in none.text


def test_a_comparison_without_any_pair_falls_back_to_the_choice():
    trials = _paired([0.01, -0.02, 0.018])
    apart = trials.assign(seed=np.where(trials["pattern"] == "dense", trials["seed"], trials["seed"] + 10))
    [line] = answer(apart, [compare(apart)], metric="test_error")
    assert line.kind == "best"


def _variants_frame(growths=(12,)):
    """dense, residual and residual with stochastic depth over 3 seeds (x growths), as a grid of variants records them."""
    rows = []
    for growth in growths:
        for seed in range(3):
            for pattern, sd, error in (("dense", np.nan, 0.20), ("residual", np.nan, 0.21), ("residual", 0.5, 0.30)):
                rows.append({"trial_id": f"{pattern}-{sd}-{seed}-{growth}", "status": "completed", "seed": seed,
                             "pattern": pattern, "stochastic_depth": sd, "growth": growth,
                             "test_error": error + 0.01 * seed, "params": 1000, "flops": 2000})
    return pd.DataFrame(rows)


def test_a_variant_s_own_option_makes_it_a_wiring_of_its_own_not_a_mean_over_both():
    # issue 26's study: residual with and without stochastic depth were averaged into one "residual"
    from connectome.analysis.answer import wiring_levels

    frame = _variants_frame()
    assert sorted(wiring_levels(frame).unique()) == ["dense", "residual", "residual, stochastic_depth=0.5"]
    lines = study_answer(frame)
    assert [line.comparison.b for line in lines] == ["residual", "residual, stochastic_depth=0.5"]
    assert [round(line.comparison.mean_diff, 6) for line in lines] == [-1.0, -10.0]  # points
    assert all("their mean was used" not in line.text for line in lines)


def test_a_factor_every_pattern_takes_alike_stays_a_pairing_key():
    from connectome.analysis.answer import wiring_levels

    frame = _variants_frame(growths=(12, 24))
    assert "growth" not in " ".join(wiring_levels(frame).unique())
    (line, _) = study_answer(frame)
    assert line.comparison.n_pairs == 6 and "growth" in line.comparison.matched_on


def test_a_budget_s_growth_is_not_a_factor_the_wirings_pair_on():
    """Random configurations, each wiring matched to a budget by its own growth: pairs are (configuration, seed)."""
    import pandas as pd

    from connectome.analysis.answer import study_answer

    trials = pd.DataFrame({"pattern": ["dense", "residual"] * 4, "seed": [0, 0, 1, 1] * 2,
                           "block_layers": ["3,3"] * 4 + ["4,1"] * 4, "growth": [17, 35, 17, 35, 13, 25, 13, 25],
                           "test_error": [0.20, 0.21, 0.22, 0.24, 0.19, 0.19, 0.25, 0.26], "status": "completed"})
    [sentence] = study_answer(trials, budget=100_000)
    assert sentence.text.startswith("dense - residual: test error -1.00 points")
    assert "4 pairs matched on seed, block_layers" in sentence.text
    assert "growth=" in study_answer(trials, budget=None)[0].text  # without a budget, growth is a factor


def test_every_decoder_wiring_is_compared_with_prenorm_but_image_wirings_stop_at_eight():
    from connectome.analysis.answer import MAX_COMPARISONS

    def frame(reference, metric):
        names = [reference, *(f"w{i:02d}" for i in range(MAX_COMPARISONS + 2))]
        return pd.DataFrame([{"trial_id": f"{n}-{s}", "status": "completed", "pattern": n, "seed": s,
                              metric: 0.3 + 0.01 * i + 0.001 * s * (i % 3), "params": 1000, "flops": 2000}
                             for i, n in enumerate(names) for s in range(3)])

    decoder = study_answer(frame("prenorm", "test_bpb"))
    assert len(decoder) == MAX_COMPARISONS + 2 and {s.comparison.b for s in decoder} == {"prenorm"}
    assert len(study_answer(frame("dense", "test_error"))) == MAX_COMPARISONS


def test_a_wiring_names_only_the_options_that_tell_its_pattern_s_wirings_apart():
    # depth_wiring: attnres read `block=0.0` (a float column, NaN for other patterns) and mhc, whose one form
    # is dynamic, read `mhc, pattern_options.dynamic=True`
    from connectome.analysis.answer import wiring_levels

    variants = [("prenorm", np.nan, np.nan), ("attnres", 0.0, np.nan), ("attnres", 4.0, np.nan),
                ("muddformer", np.nan, True), ("muddformer", np.nan, False), ("mhc", np.nan, True)]
    frame = pd.DataFrame([{"trial_id": f"{i}-{seed}", "seed": seed, "pattern": p, "pattern_options.block": block,
                           "pattern_options.dynamic": dynamic} for i, (p, block, dynamic) in enumerate(variants)
                          for seed in range(2)])
    assert sorted(wiring_levels(frame).unique()) == [
        "attnres, pattern_options.block=0", "attnres, pattern_options.block=4", "mhc",
        "muddformer, pattern_options.dynamic=False", "muddformer, pattern_options.dynamic=True", "prenorm"]


def test_the_chosen_configuration_names_a_whole_number_option_as_an_integer():
    # an Optuna wiring search: streams only for the multi-stream patterns, so the column is float
    trials = pd.DataFrame({"trial_id": ["a", "b"], "status": "completed", "seed": 0, "data.name": "text",
                           "pattern": ["mhc", "partial"], "pattern_options.streams": [4.0, np.nan],
                           "best_val_bpb": [6.5, 6.7], "test_bpb": [6.51, 6.74], "params": 1000, "flops": 10})
    text = best_configuration(trials, metric="test_bpb").text
    assert "pattern=mhc, pattern_options.streams=4 (" in text


def test_sizes_pair_trials_whose_matched_keys_are_missing():
    import pandas as pd

    from connectome.analysis.answer import size_clause
    from connectome.analysis.stats import compare

    # pandas 3 keeps NaN through astype(str): the key match joined a float and failed
    trials = pd.DataFrame({"wiring": ["a", "b"] * 4, "seed": [0, 0, 1, 1] * 2, "sublayers": [None] * 4 + [16.0] * 4,
                           "test_bpb": [2.5, 2.6, 2.4, 2.7, 2.3, 2.6, 2.2, 2.5], "params": [100, 110] * 4})
    c = compare(trials, factor="wiring", a="a", b="b", metric="test_bpb")
    assert c.n_pairs == 4 and "sublayers" in c.matched_on  # a missing key pairs as a level of its own
    assert size_clause(trials, c) == " a has 9% fewer parameters."
