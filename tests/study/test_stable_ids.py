"""Trial ids and study fingerprints of the shipped studies stay byte-identical across releases.

They are hashes of pydantic dumps, so a dependency that dumps differently (pydantic before 2.12
ignores `Field(exclude_if=...)`) or a new config key with a dumped default would re-key every
earlier study. The table is written by `python -m tests.study.test_stable_ids` (from the repository
root); rewrite it only for a change that is meant to re-key studies, and say so in the changelog.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from connectome.study import expand_grid, load_study
from connectome.study.definition import fingerprint
from connectome.study.schema import GridSearch

REPO = Path(__file__).resolve().parents[2]
TABLE = Path(__file__).with_name("stable_ids.json")
STUDIES = sorted(str(p.relative_to(REPO)) for p in (REPO / "studies").rglob("*.yaml"))
# The execution choices that "auto" resolves per machine, fixed so the ids do not depend on the CPU.
MACHINE_FREE = ("train.precision=fp32", "train.channels_last=false", "train.compile=false")


def study_ids(name: str) -> dict[str, object]:
    """The study's fingerprint and, for a grid, its trial ids in plan order."""
    study = load_study(REPO / name)
    ids: dict[str, object] = {"fingerprint": fingerprint(study.model_dump(mode="json"))}
    if isinstance(study.search, GridSearch):
        ids["trial_ids"] = [t.trial_id for t in expand_grid(load_study(REPO / name, MACHINE_FREE))]
    return ids


def test_every_shipped_study_is_in_the_table():
    assert sorted(json.loads(TABLE.read_text())) == STUDIES


@pytest.mark.parametrize("name", STUDIES)
def test_ids_are_unchanged(name):
    assert study_ids(name) == json.loads(TABLE.read_text())[name]


if __name__ == "__main__":
    TABLE.write_text(json.dumps({name: study_ids(name) for name in STUDIES}, indent=1) + "\n")
    sys.stdout.write(f"wrote {TABLE.relative_to(REPO)} ({len(STUDIES)} studies)\n")
