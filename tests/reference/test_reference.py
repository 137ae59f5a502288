"""Table 1 as shipped data: values checked against the paper's text, and matching trials."""
import re
from pathlib import Path

import pandas as pd
import pytest

from connectome.reference import paper_rows, setting_of, table1

PAPER = Path("/work/shared/paper/densenet-v1.txt")


def _row(method, depth, setting, growth=None):
    t = table1()
    hit = t[(t.method == method) & (t.depth == depth) & (t.setting == setting)]
    if growth is not None:
        hit = hit[hit.growth == growth]
    assert len(hit) == 1, hit
    return hit.iloc[0]


@pytest.mark.parametrize("method, depth, setting, error", [
    ("DenseNet", 40, "C10", 0.0700), ("DenseNet", 100, "C10+", 0.0410), ("DenseNet", 100, "C10+", 0.0374),
    ("ResNet (pre-activation)", 1001, "C100+", 0.2271), ("ResNet", 110, "C10+", 0.0661),
    ("FractalNet", 21, "C100", 0.3534),
])
def test_values_from_the_papers_text(method, depth, setting, error):
    growth = {0.0410: 12, 0.0374: 24}.get(error)
    assert _row(method, depth, setting, growth).error == pytest.approx(error, abs=1e-9)


def test_every_densenet_row_and_its_presets():
    t = table1()
    dense = t[t.method == "DenseNet"]
    assert len(dense) == 15  # 3 networks x 5 settings
    assert set(dense.preset) == {"densenet-40-12", "densenet-100-12", "densenet-100-24"}
    assert dense.groupby("preset").params_millions.first().to_dict() == {
        "densenet-100-12": 7.0, "densenet-100-24": 27.2, "densenet-40-12": 1.0}
    assert t.error.between(0, 1).all()  # fractions, like every metric here
    starred = t[t.run_by_densenet_authors]
    assert set(starred.setting) == {"C10", "C100"} and set(starred.depth) == {164, 1001}


@pytest.mark.skipif(not PAPER.exists(), reason="paper text not on this machine")
def test_densenet_rows_equal_the_paper_text_lines():
    lines = re.findall(r"DenseNet \(L = (\d+), k = (\d+)\) \d+ ([\d.]+)M ([\d. ]+)\n", PAPER.read_text())
    assert len(lines) == 3
    for depth, k, params, errors in lines:
        for setting, err in zip(["C10", "C10+", "C100", "C100+", "SVHN"], errors.split()):
            row = _row("DenseNet", int(depth), setting, int(k))
            assert (row.error, row.params_millions) == (pytest.approx(float(err) / 100, abs=1e-9), float(params))


def test_settings_and_trial_matching():
    assert setting_of("cifar10", True) == "C10+" and setting_of("svhn", None) == "SVHN"
    assert setting_of("cifar100", None) == "C100+" and setting_of("fashion-mnist", False) is None
    trials = pd.DataFrame({"preset": ["densenet-40-12", "resnet-110", None],
                           "data.name": ["cifar10", "cifar10", "cifar10"],
                           "data.augment": [False, None, True]})
    rows = paper_rows(trials)
    assert sorted(zip(rows.preset, rows.setting, rows.error)) == [
        ("densenet-40-12", "C10", 0.07), ("resnet-110", "C10+", 0.0641), ("resnet-110", "C10+", 0.0661)]


def test_a_preset_with_another_depth_matches_no_row():
    trials = pd.DataFrame({"preset": ["preact-resnet-164", "preact-resnet-164"], "depth": [47, 164],
                           "data.name": ["cifar10"] * 2, "data.augment": [True] * 2})
    rows = paper_rows(trials)
    assert list(zip(rows.depth, rows.setting)) == [(164, "C10+")]


def test_every_preset_named_by_a_row_builds_that_rows_network():
    from connectome.architecture import PRESETS, make_arch

    named = table1().dropna(subset=["preset"]).drop_duplicates("preset")
    assert {"wrn-16-8", "wrn-28-10", "wrn-16-4-dropout", "resnet-sd-110", "resnet-sd-1202", "fractalnet-21",
            "fractalnet-21-droppath", "highway-19"} <= set(named.preset)
    for row in named.itertuples():
        assert row.preset in PRESETS and make_arch(preset=row.preset).depth == row.depth, row


def test_the_other_wirings_trials_match_their_own_rows():
    trials = pd.DataFrame({"preset": ["wrn-16-8", "wrn-16-4-dropout", "fractalnet-21-droppath", "resnet-sd-110",
                                      "highway-19"],
                           "depth": [16, 16, 21, 110, 19],
                           "data.name": ["cifar10", "svhn", "cifar10", "cifar100", "cifar100"],
                           "data.augment": [True, None, True, False, True]})
    rows = paper_rows(trials)
    assert sorted(zip(rows.method, rows.setting, rows.error)) == [
        ("FractalNet with Dropout/Drop-path", "C10+", 0.0460), ("Highway Network", "C100+", 0.3239),
        ("ResNet with Stochastic Depth", "C100", 0.3780),
        ("Wide ResNet", "C10+", 0.0481), ("Wide ResNet with Dropout", "SVHN", 0.0164)]
