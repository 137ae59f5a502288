"""A trial's config.json that is no valid trial config: `export` and `lesion` name the file in one line."""
from __future__ import annotations

import json

import pytest

from connectome.cli import main
from connectome.errors import ConfigError
from connectome.store.layout import StudyDir, write_json


def _trial_with_bad_config(root):
    """A finished trial folder whose config.json holds an invalid config (issue 30: a traceback)."""
    files = StudyDir(root).trial("dense-bad")
    write_json(files.config, {"layout": 2, "trial_id": "dense-bad", "config": {"train": {"epochs": "many"}}})
    write_json(files.result, {"layout": 2, "row": {"trial_id": "dense-bad", "status": "completed"}, "epochs": []})
    files.spec.write_text(json.dumps({}))
    return files


def test_export_names_an_invalid_trial_config_in_one_line(tmp_path, capsys):
    files = _trial_with_bad_config(tmp_path)
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("connectome export: error: ") and "\n" not in err
    assert f"invalid {files.config}: train.epochs:" in err


def test_lesion_names_an_invalid_trial_config(tmp_path):
    from connectome.analysis.lesion import validation_subset

    files = _trial_with_bad_config(tmp_path)
    with pytest.raises(ConfigError, match=rf"invalid {files.config}: train\.epochs:"):
        validation_subset(files.dir, 10)
