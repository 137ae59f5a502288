"""examples/analysis.ipynb runs end to end, printing the study's answer and drawing its figure, so it never goes stale.

On a fake results directory in the quick tier, and on the real smoke study's results (Ray: slow).
"""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from connectome.analysis import load, results_answer

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "analysis.ipynb"


def run_notebook(results_dir: Path, monkeypatch) -> list[dict]:
    """Execute the notebook on `results_dir` (its parameter: CONNECTOME_RESULTS); returns every cell output."""
    monkeypatch.setenv("CONNECTOME_RESULTS", str(results_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def check_outputs(outputs: list[dict], results_dir: Path) -> None:
    printed = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    answer = [sentence.text for sentence in results_answer(load(results_dir))]
    assert answer[0].startswith("dense - partial: test error ")
    assert all(line in printed for line in answer)  # the answer, as the report opens with it
    tables = [o["data"]["text/plain"] for o in outputs if o["output_type"] == "execute_result"
              and "text/html" in o.get("data", {})]
    assert any("ci_low" in t and "dense" in t for t in tables)  # the summary
    assert any("diff" in t for t in tables) and "mean_diff(a-b)" in printed  # the paired comparison
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1  # one figure
    assert not [o for o in outputs if o["output_type"] == "error"]


@pytest.mark.timeout(600)
def test_the_notebook_runs_on_a_results_directory(tmp_path, monkeypatch):
    from analysis.fake_results import make_results_dir

    results_dir = make_results_dir(tmp_path, with_models=False)
    check_outputs(run_notebook(results_dir, monkeypatch), results_dir)


@pytest.mark.timeout(900)
def test_the_notebook_runs_on_the_smoke_study(smoke_results, monkeypatch):
    results_dir, _ = smoke_results
    check_outputs(run_notebook(results_dir, monkeypatch), results_dir)
