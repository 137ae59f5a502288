"""The Table 1 wiring studies: matched, paired and complete as their comments say."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from connectome.study import expand_grid, load_study

REPO = Path(__file__).resolve().parents[2]


def test_fashion_study_pairs_every_wiring_by_seed_at_about_100k_params():
    trials = expand_grid(load_study(REPO / "studies" / "table1_wirings_fashion.yaml"))
    kinds = Counter((t.config.arch.pattern, t.config.arch.stochastic_depth,
                     bool(t.config.arch.pattern_options)) for t in trials)
    assert set(kinds) == {("dense", None, False), ("partial", None, False), ("residual", None, False),
                          ("residual", 0.5, False), ("fractal", None, False), ("fractal", None, True),
                          ("highway", None, False), ("plain", None, False)}
    assert set(kinds.values()) == {3}
    seeds = {kind: sorted(t.config.seed for t in trials if (t.config.arch.pattern, t.config.arch.stochastic_depth,
                                                              bool(t.config.arch.pattern_options)) == kind)
             for kind in kinds}
    assert len({tuple(s) for s in seeds.values()}) == 1  # the same seeds for every wiring: paired
    assert all(90_000 <= t.params <= 110_000 for t in trials) and not any(t.rejected for t in trials)


def test_paper_study_builds_the_published_networks_at_their_recipes():
    trials = expand_grid(load_study(REPO / "studies" / "paper" / "table1_wirings_c10plus.yaml"))
    by_preset = {t.config.arch.preset: t for t in trials}
    assert {p: round(t.params / 1e6, 1) for p, t in by_preset.items()} == {
        "wrn-16-8": 11.0, "wrn-28-10": 36.5, "resnet-sd-110": 1.7, "resnet-sd-1202": 19.4,
        "fractalnet-21": 33.7, "fractalnet-21-droppath": 33.7, "highway-19": 2.3}
    recipes = {p: (t.config.train.epochs, t.config.train.batch_size, t.config.train.lr) for p, t in by_preset.items()}
    assert recipes["wrn-28-10"] == (200, 128, 0.1) and recipes["resnet-sd-1202"] == (500, 128, 0.1)
    assert recipes["fractalnet-21"] == (400, 100, 0.02) and recipes["highway-19"] == (400, 100, 0.025)
    assert by_preset["fractalnet-21-droppath"].config.arch.pattern_options == {"drop": 0.15, "global_drop": 0.5}
    assert all(t.config.data.augment and t.config.data.val_size == 0 for t in trials)
