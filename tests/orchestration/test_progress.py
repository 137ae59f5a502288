"""Study progress and dry-run output: user text (descriptions, values, errors) is printed verbatim, never as markup."""
from __future__ import annotations

import io

import pandas as pd
from rich.console import Console

from connectome.cli import main
from connectome.study.dryrun import print_plan
from connectome.orchestration.progress import StudyView, summary_table
from connectome.study import load_study

from study.conftest import smoke_dict, write_study

MARKUP = "bad [/] markup [bold]x[/bold] [link=file:///etc/passwd]y"


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, color_system=None), out


def test_description_with_markup_through_the_cli(tmp_path, capsys):
    path = write_study(tmp_path, smoke_dict(tmp_path, description=MARKUP))
    assert main(["run", str(path), "--dry-run"]) == 0
    assert MARKUP in capsys.readouterr().out


def test_grid_values_with_markup_print_verbatim(tmp_path):
    import json

    import networkx as nx

    graph = nx.DiGraph([(0, 1), (1, 2), (0, 2)])
    (tmp_path / "[red]g.json").write_text(json.dumps(nx.node_link_data(graph, edges="links")))
    data = smoke_dict(tmp_path)
    data["search"]["variants"] = [{"pattern": "file", "pattern_options": {"path": str(tmp_path / "[red]g.json")}}]
    console, out = _console()
    print_plan(load_study(write_study(tmp_path, data)), console)
    assert "[red]g.json" in out.getvalue().replace("\n", "")


def test_progress_lines_print_errors_verbatim():
    console, out = _console()
    with StudyView(console, "s", total=1, done=0) as view:
        view.started("t1")
        view.finished("t1", {"status": "failed", "error": "ValueError: [/] closes [bold]nothing"})
    assert "t1: failed ValueError: [/] closes [bold]nothing [1/1]" in out.getvalue()


def test_summary_table_groups_with_markup():
    trials = pd.DataFrame({"pattern": ["[/]", "[bold]"], "status": ["completed"] * 2,
                           "test_acc": [0.5, 0.6], "params": [10, 20]})
    console, out = _console()
    console.print(summary_table(trials, ["pattern"], title="t"))
    assert "[/]" in out.getvalue() and "[bold]" in out.getvalue()
