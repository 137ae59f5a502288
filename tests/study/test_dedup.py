"""Dedup: isomorphic graphs with the same training run once; replicates and other training do not."""
from __future__ import annotations

import json

import networkx as nx

from connectome.study import expand_grid, load_study
from connectome.study.dedup import Deduplicator, training_key
from connectome.training.plan import plan_trial

from study.conftest import smoke_dict, write_study

# A block of 3 layers in which layers 1 and 3 have different roles; B is A with 1 and 3 swapped.
EDGES_A = [(0, 1), (1, 2), (0, 2), (2, 4), (0, 3), (3, 4)]
EDGES_B = [(0, 3), (3, 2), (0, 2), (2, 4), (0, 1), (1, 4)]


def _write_graph(tmp_path, name, edges):
    g = nx.DiGraph(edges)
    g.remove_node(4)  # the pattern adds the output, reading every sink
    path = tmp_path / name
    path.write_text(json.dumps(nx.node_link_data(g, edges="links")))
    return str(path)


def _study(tmp_path, variants, seeds=1, **changes):
    data = smoke_dict(tmp_path, **changes)
    data["search"] = {"kind": "grid", "variants": variants, "seeds": seeds}
    return load_study(write_study(tmp_path, data))


def test_renumbered_file_graphs_are_one_trial_per_seed(tmp_path):
    a, b = _write_graph(tmp_path, "a.json", EDGES_A), _write_graph(tmp_path, "b.json", EDGES_B)
    variants = [{"pattern": "file", "pattern_options": {"path": p}} for p in (a, b)]
    trials = expand_grid(_study(tmp_path, variants, seeds=2))
    assert len(trials) == 4 and len({t.trial_id for t in trials}) == 4
    kept = [t for t in trials if not t.rejected]
    dups = [t for t in trials if t.duplicate_of]
    assert [t.config.seed for t in kept] == [0, 1]  # replicates with other seeds are kept
    assert {(t.duplicate_of, t.config.seed) for t in dups} == {(k.trial_id, k.config.seed) for k in kept}
    assert all(t.rejected.startswith("duplicate_of ") for t in dups)


def test_dense_equals_partial_reading_everything(tmp_path):
    # depth 10, growth 4, stem 16: the largest state per block is 16+4, 24+4, 32+4 channels
    trials = expand_grid(_study(tmp_path, [{"pattern": "dense"}, {"pattern": "partial", "m": [20, 28, 36]},
                                           {"pattern": "partial"}]))
    by_pattern = {(t.config.arch.pattern, _hashable(t.config.arch.m)): t for t in trials}
    assert by_pattern[("partial", (20, 28, 36))].duplicate_of == by_pattern[("dense", None)].trial_id
    assert by_pattern[("partial", None)].duplicate_of is None


def test_a_trial_alone_in_its_sizes_is_never_hashed(tmp_path, monkeypatch):
    """The canonical key (seconds for a long network) is computed only for trials that share training, seed,
    parameters and multiply-adds with another: isomorphic specs always do."""
    from connectome.canonical import CanonicalIndex

    hashed = []
    key = CanonicalIndex.key
    monkeypatch.setattr(CanonicalIndex, "key", lambda self, spec: hashed.append(spec) or key(self, spec))
    a, b = _write_graph(tmp_path, "a.json", EDGES_A), _write_graph(tmp_path, "b.json", EDGES_B)
    variants = [{"pattern": "dense"}, {"pattern": "plain"}, *({"pattern": "file", "pattern_options": {"path": p}}
                                                              for p in (a, b))]
    trials = expand_grid(_study(tmp_path, variants))
    assert [t.duplicate_of is not None for t in trials] == [False, False, False, True]
    assert len(hashed) == 2  # the two file graphs, once each; dense and plain have sizes of their own


def _hashable(m):
    return tuple(m) if isinstance(m, list) else m


def test_other_training_or_dropout_is_not_a_duplicate(tmp_path):
    study = _study(tmp_path, [{"pattern": "dense"}])
    config = expand_grid(study)[0].config
    dedup = Deduplicator()
    assert dedup.duplicate_of("a", plan_trial(config)) is None
    assert dedup.duplicate_of("a", plan_trial(config)) is None  # the same trial is not its own duplicate
    assert dedup.duplicate_of("b", plan_trial(config.model_copy(update={"train": config.train.model_copy(update={"threads": 3})}))) == "a"
    lr = config.model_copy(update={"train": config.train.model_copy(update={"lr": 0.05})})
    assert dedup.duplicate_of("c", plan_trial(lr)) is None
    dropout = config.model_copy(update={"arch": config.arch.model_copy(update={"dropout": 0.0})})
    assert training_key(dropout) != training_key(config)  # None is resolved from the data later
    assert dedup.duplicate_of("d", plan_trial(dropout)) is None


def test_seeded_from_planned_trial_files(tmp_path):
    config = expand_grid(_study(tmp_path, [{"pattern": "dense"}]))[0].config
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "trial.json").write_text(json.dumps({"trial_id": "t1", "config": config.model_dump(mode="json")}))
    dedup = Deduplicator.from_trial_files(tmp_path.glob("*/trial.json"))
    assert dedup.duplicate_of("t2", plan_trial(config)) == "t1"


def test_planned_spec_is_the_spec_the_trainer_builds(tmp_path):
    from connectome.training.trainer import setup_trial

    config = expand_grid(_study(tmp_path, [{"pattern": "dense"}]))[0].config
    assert config.arch.dropout is None  # resolved from the (unaugmented) synthetic data: 0.2
    assert plan_trial(config).spec == setup_trial(config).spec
    assert plan_trial(config).arch.dropout == 0.2


def test_grid_duplicates_are_kept_in_the_plan_and_shown_by_load(tmp_path):
    import io

    from rich.console import Console

    from connectome.analysis import load
    from connectome.orchestration.driver import plan_grid
    from connectome.store.layout import StudyDir

    study = _study(tmp_path, [{"pattern": "dense"}, {"pattern": "partial", "m": [20, 28, 36]}])
    out = io.StringIO()
    trials, _, duplicates = plan_grid(study, Console(file=out, width=200))
    dense, = trials
    assert len(duplicates) == 1 and list(duplicates.values()) == [dense.trial_id]
    assert f"duplicate_of {dense.trial_id}" in out.getvalue()
    sd = StudyDir(tmp_path / "results" / study.name)
    sd.root.mkdir(parents=True)
    sd.write_plan([t.trial_id for t in trials], duplicates)
    assert sd.planned_duplicates() == duplicates
    results = load(sd.root)
    assert results.duplicates == duplicates
    assert results.counts["total"] == 1  # the duplicate is not a trial of the study
    assert results.describe_counts().endswith("; 1 planned duplicates skipped")
