"""`connectome report`: writes the report of a results directory; user errors in one line."""
import json
from pathlib import Path

import pandas as pd
import pytest

from connectome.cli import main


@pytest.fixture
def results_dir(tmp_path):
    """Two patterns x two seeds, parquet files only (no trained models kept)."""
    path = tmp_path / "tiny"
    path.mkdir()
    rows = [{"trial_id": f"{p}-{s}", "study": "tiny", "pattern": p, "growth": 4, "seed": s,
             "status": "completed", "params": 900 if p == "partial" else 1000,
             "test_error": 0.2 + 0.05 * (p == "partial") + 0.01 * s, "best_val_acc": 0.8 - 0.01 * s}
            for p in ("dense", "partial") for s in (0, 1)]
    pd.DataFrame(rows).to_parquet(path / "trials.parquet")
    pd.DataFrame([{"trial_id": r["trial_id"], "epoch": e, "train_loss": 1.0 / e, "val_acc": 0.5 + 0.1 * e}
                  for r in rows for e in (1, 2, 3)]).to_parquet(path / "epochs.parquet")
    return path


def test_report_command_writes_markdown_html_and_figures(results_dir, capsys):
    assert main(["report", str(results_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dense - partial: test error -5.00 points [")  # the answer first, as in the report
    assert "4 trials: 4 completed, 0 diverged, 0 failed, 0 missing" in out
    assert f"wrote {results_dir / 'report.md'}" in out
    text = (results_dir / "report.md").read_text()
    assert "| pattern | dense | partial | test_error_pts | 2 | 0 | -5.00 |" in text
    assert "No completed trial kept `spec.json` and `model.pt`" in text
    for stem in ("error_vs_params", "training_curves", "pareto_params"):
        assert (results_dir / "figures" / f"{stem}.png").stat().st_size > 1000
    assert (results_dir / "report.html").read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("flag", ["-o", "--output", "--out"])  # --out: the old name, hidden
def test_report_command_metric_and_output(flag, results_dir, tmp_path, capsys, text_only):
    out_dir = tmp_path / "out"
    assert main(["report", str(results_dir), "--metric", "best_val_acc", flag, str(out_dir)]) == 0
    assert "`best_val_error_pts` over completed trials" in (out_dir / "report.md").read_text()
    assert not (results_dir / "report.md").exists()


def test_report_command_json(results_dir, tmp_path, capsys, text_only):
    assert main(["report", str(results_dir), "-o", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["markdown"] == str(tmp_path / "report.md") and Path(data["html"]).is_file()
    assert data["figures"] and all(Path(f).is_file() for f in data["figures"])
    assert data["counts"]["total"] == len(pd.read_parquet(results_dir / "trials.parquet"))
    [answer] = data["answer"]
    assert answer.startswith("dense - partial: test error -5.00 points")


def test_report_command_missing_directory_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("connectome report: error: results directory") and "\n" not in err


def test_report_command_unknown_metric_is_one_line(results_dir, capsys):
    assert main(["report", str(results_dir), "--metric", "tset_error"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tset_error" in err and "\n" not in err


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_crafted_model_pt_is_refused_in_one_line(tmp_path, capsys, protocol, text_only):
    import pickle

    from analysis.fake_results import make_results_dir

    path = make_results_dir(tmp_path)
    marker = tmp_path / "pwned"
    crafted = sorted((path / "trials").glob("*/model.pt"))
    for model in crafted:
        model.write_bytes(pickle.dumps(_RunsCode(marker), protocol=protocol))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "model.pt: refused, not a weights file" in err
    text = (path / "report.md").read_text()  # the rest of the report is still written
    assert text.count("refused, not a weights file") == 2 and "Summary" in text


def test_a_corrupt_optuna_db_is_one_line_naming_it(results_dir, capsys, text_only):
    """issue 30: a damaged optuna.db was a traceback (exit 1)."""
    (results_dir / "optuna.db").write_bytes(b"\x00garbage" * 500)
    assert main(["report", str(results_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("connectome report: error: ") and "optuna.db: not a readable Optuna database" in err
    assert "\n" not in err


def test_a_results_directory_the_file_system_refuses_is_one_line(results_dir, capsys, monkeypatch, text_only):
    """issue 30: a read-only results directory ended `report` in a traceback (root ignores chmod: the
    refusal is the file system's answer, EACCES, to the first file the report writes there)."""
    from connectome import files

    real = files.tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(results_dir.resolve()):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    assert main(["report", str(results_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("connectome report: error: Permission denied: ")
    assert str(results_dir) in err
