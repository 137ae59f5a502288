"""Trial labels (pattern, factors, seed) and the layering that keeps them out of the Ray side."""
import ast
import json
from pathlib import Path

import connectome
from connectome.store.labels import label_from_trial_file, trial_label

DENSE = {"pattern": "dense", "growth": 12, "train.lr": 0.1}
PACKAGE = Path(connectome.__file__).parent


def test_trial_label_names_pattern_factors_and_seed():
    assert trial_label(DENSE, seed=3) == "dense, growth=12, train.lr=0.1, seed 3"
    assert trial_label({**DENSE, "block_layers": [6, 12]}, keys=["block_layers"]) == "dense, block_layers=6,12"
    assert trial_label({"growth": 4}, seed=0) == "growth=4, seed 0"
    assert trial_label({"pattern": "dense", "m": float("nan"), "growth": 4}) == "dense, growth=4"


def test_label_from_trial_file(tmp_path):
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "config.json").write_text(json.dumps(
        {"trial_id": "t1", "assignment": {"pattern": "partial", "depth": 40}, "config": {"seed": 2}}))
    (tmp_path / "t3.json").write_text("[1, 2]")
    assert label_from_trial_file(tmp_path / "t1" / "config.json") == "partial, depth=40, seed 2"
    assert label_from_trial_file(tmp_path / "t2" / "config.json") is None  # not written yet
    assert label_from_trial_file(tmp_path / "t3.json") is None  # not a trial file
    # a level the study chose as null (the span curve's "no limit") is named, not dropped
    (tmp_path / "t4.json").write_text(json.dumps(
        {"trial_id": "t4", "assignment": {"pattern_options.max_span": None}, "config": {"seed": 1}}))
    assert label_from_trial_file(tmp_path / "t4.json") == "pattern_options.max_span=null, seed 1"


def _module_imports(path: Path) -> set[str]:
    """Modules imported at a file's top level (imports inside functions are lazy, and allowed)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_store_and_analysis_do_not_import_the_ray_side():
    """The core (store, analysis, report) takes labels from the store, never from connectome.orchestration."""
    files = [*(PACKAGE / "store").glob("*.py"), *(PACKAGE / "analysis").glob("*.py")]
    offenders = {f.name: sorted(m for m in _module_imports(f) if m.startswith(("connectome.orchestration", "ray")))
                 for f in files}
    assert {name: mods for name, mods in offenders.items() if mods} == {}
