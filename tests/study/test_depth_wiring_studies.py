"""The depth-wiring studies (issue 28): every wiring paired with prenorm by seed, as their comments say."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from connectome.analysis.answer import study_answer
from connectome.study import expand_grid, load_study

REPO = Path(__file__).resolve().parents[2]
STUDIES = REPO / "studies"


def _wiring(trial) -> tuple:
    """A trial's wiring: its pattern and pattern options."""
    return trial.config.arch.pattern, tuple(sorted(trial.config.arch.pattern_options.items()))


def _seeds_per(trials, key) -> set[tuple[int, ...]]:
    """The seeds each group of trials has (one set when every group has the same: paired)."""
    groups: dict = {}
    for t in trials:
        groups.setdefault(key(t), []).append(t.config.seed)
    return {tuple(sorted(s)) for s in groups.values()}


def _answer_of(trials) -> list:
    """The answer a finished study of these trials gives, with a made-up test bpb per trial."""
    rows = [{"trial_id": t.trial_id, "status": "completed", "seed": t.config.seed, "pattern": t.config.arch.pattern,
             "growth": t.config.arch.growth, "sublayers": t.config.arch.sublayers, "data.name": "text",
             **{k: v for k, v in t.assignment.items() if k.startswith("pattern_options.")},
             "test_bpb": 2.5 + 0.01 * i % 0.07, "best_val_bpb": 2.5, "params": t.params, "flops": t.flops}
            for i, t in enumerate(trials)]
    return study_answer(pd.DataFrame(rows))


def test_depth_wiring_pairs_each_of_its_twelve_wirings_with_prenorm():
    study = load_study(STUDIES / "depth_wiring.yaml")
    trials = expand_grid(study)
    wirings = Counter(_wiring(t) for t in trials)
    assert {p for p, _ in wirings} == {"prenorm", "denseformer", "muddformer", "hyper-connections", "mhc", "laurel",
                                       "value-residual", "attnres", "dense-concat"}
    assert len(wirings) == 12 and not any(t.rejected for t in trials)
    assert {("muddformer", (("dynamic", d),)) for d in (False, True)} <= set(wirings)
    assert {("hyper-connections", (("dynamic", d), ("streams", 4))) for d in (False, True)} <= set(wirings)
    assert {("attnres", (("block", b),)) for b in (0, 4)} <= set(wirings)
    assert _seeds_per(trials, _wiring) == {(0, 1, 2)}
    # the same sublayers, context and validation windows for every trial: one set of fixed windows
    assert len({(t.config.arch.sublayers, t.config.arch.context, t.config.data) for t in trials}) == 1
    sentences = _answer_of(trials)
    assert len(sentences) == 11 and {s.comparison.b for s in sentences} == {"prenorm"}
    assert all(s.comparison.n_pairs == 3 for s in sentences)


def test_depth_wiring_depth_runs_four_wirings_at_three_depths_and_one_width():
    trials = expand_grid(load_study(STUDIES / "depth_wiring_depth.yaml"))
    cells = Counter((t.config.arch.pattern, t.config.arch.sublayers) for t in trials)
    assert set(cells) == {(p, s) for p in ("prenorm", "denseformer", "muddformer", "hyper-connections")
                          for s in (8, 16, 32)}
    assert set(cells.values()) == {3} and len({t.config.arch.growth for t in trials}) == 1
    assert _seeds_per(trials, lambda t: (t.config.arch.pattern, t.config.arch.sublayers)) == {(0, 1, 2)}
    sentences = _answer_of(trials)
    assert {s.comparison.b for s in sentences} == {"prenorm"} and len(sentences) == 3
    assert all(s.comparison.n_pairs == 9 and "sublayers" in s.comparison.matched_on for s in sentences)


def test_paper_depth_wiring_studies_keep_their_papers_shapes():
    factory = load_study(STUDIES / "paper" / "depth_wiring_factory_tiny.yaml")
    trials = expand_grid(factory)
    arch = trials[0].config.arch
    assert (arch.sublayers, arch.growth, arch.heads, arch.context, round(arch.mlp_ratio * arch.growth)) == \
        (24, 256, 4, 256, 704)
    assert factory.train.steps * factory.train.batch_size * arch.context == 12_288_000  # "12.3M tokens"
    assert len({_wiring(t) for t in trials}) == 10 and _seeds_per(trials, _wiring) == {(0, 1, 2)}
    dense = load_study(STUDIES / "paper" / "depth_wiring_denseformer48.yaml")
    trials = expand_grid(dense)
    assert {(t.config.arch.pattern, t.config.arch.sublayers, t.config.arch.growth) for t in trials} == \
        {("prenorm", 96, 768), ("denseformer", 96, 768)}
    assert all(study.resources.gpu >= 1 for study in (factory, dense))
