"""Which edits of a study may resume its results: plan growth and resources, nothing else."""
from __future__ import annotations

from connectome.study import load_study
from connectome.study.definition import compare, fingerprint

from study.conftest import smoke_dict, write_study


def _dump(tmp_path, *overrides):
    return load_study(write_study(tmp_path, smoke_dict(tmp_path)), list(overrides)).model_dump(mode="json")


def test_resource_edits_are_not_changes(tmp_path):
    base = _dump(tmp_path)
    moved = _dump(tmp_path, "train.threads=2", "resources.cpu=2", "data.download=false", "retries=3",
                  "description=other", "train.eval_batch_size=7")
    assert not compare(base, moved).any and fingerprint(base) == fingerprint(moved)


def test_numeric_edits_are_conflicts_named_with_old_and_new_values(tmp_path):
    changes = compare(_dump(tmp_path), _dump(tmp_path, "train.epochs=3", "train.precision=bf16"))
    assert changes.conflicts == ["train.epochs: 2 -> 3", "train.precision: auto -> bf16"]


def test_growing_the_plan_is_accepted(tmp_path):
    base = _dump(tmp_path)
    grown = _dump(tmp_path, "search.seeds=3", "search.variants=[{pattern: dense}, {pattern: partial}, {pattern: plain}]")
    changes = compare(base, grown)
    assert not changes.conflicts and len(changes.growth) == 2
    assert changes.growth[0].startswith("search.seeds: 2 -> 3")


def test_shrinking_or_replacing_the_plan_is_a_conflict(tmp_path):
    base = _dump(tmp_path)
    assert compare(base, _dump(tmp_path, "search.seeds=1")).conflicts == ["search.seeds: 2 -> 1"]
    assert compare(base, _dump(tmp_path, "search.variants=[{pattern: plain}]")).conflicts
    assert compare(base, _dump(tmp_path, "search.factors={growth: [4]}")).conflicts
