"""The live view of a running study, recorded on a rich Console (terminal and log modes)."""
import io
import json

import pandas as pd
import pytest
from rich.console import Console

from connectome.orchestration.progress import StudyView, summary_table
from connectome.store.labels import label_from_trial_file, trial_label
from connectome.cli import main
from connectome.study import load_study
from connectome.study.dryrun import print_plan

from study.conftest import smoke_dict, write_study

DENSE = {"pattern": "dense", "growth": 12, "train.lr": 0.1}


class Clock:
    """A settable monotonic clock."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def console(terminal: bool, width: int = 60) -> Console:
    return Console(file=io.StringIO(), record=True, force_terminal=terminal, width=width,
                   color_system=None, legacy_windows=False)


def run_two_trials(view: StudyView, clock: Clock) -> None:
    """One trial completes, one fails with an error holding rich markup, around batch updates."""
    view.started("dense-0a1b2c3d4e", label=trial_label(DENSE, seed=0))
    view.started("partial-9f8e7d6c5b")
    clock.now += 10
    view.batch("dense-0a1b2c3d4e", epoch=1, epochs=2, batch=50, batches=100, images_per_s=1234.5)
    clock.now += 10
    view.epoch("dense-0a1b2c3d4e", {"epoch": 1, "epochs": 2, "val_acc": 0.8125})
    clock.now += 20
    view.finished("dense-0a1b2c3d4e", {"status": "completed", "test_acc": 0.8312, "best_val_acc": 0.84})
    view.finished("partial-9f8e7d6c5b", {"status": "failed",
                                         "error": "Traceback ...\nKeyError: '[bold]m[/bold] missing'"})


@pytest.mark.parametrize("terminal", [True, False])
def test_finished_trials_keep_a_line_with_their_result_or_error(terminal):
    out, clock = console(terminal), Clock()
    with StudyView(out, "smoke [v2]", total=4, done=0, clock=clock) as view:
        run_two_trials(view, clock)
    text = out.export_text(clear=False)
    assert ("dense, growth=12, train.lr=0.1, seed 0: completed, test error 16.88 points, best val error 16.00 points "
            "[1/4]") in text
    # the epoch line speaks the same metric family: validation error in points, not accuracy (a log keeps it)
    assert terminal or "epoch 1/2, val error 18.75 points" in text
    assert "val acc" not in text
    # the error is printed as written: brackets are not eaten as markup
    assert "partial-9f8e7d6c5b: failed: KeyError: '[bold]m[/bold] missing' [2/4]" in text
    assert "dense-0a1b2c3d4e" not in text  # named by what it is, not by its hash
    assert "83.12%" not in text and "%" not in text.replace("100%", "")  # fractions, as stored


def test_terminal_view_shows_eta_batches_and_speed():
    out, clock = console(True), Clock()
    view = StudyView(out, "smoke", total=4, done=0, clock=clock)
    clock.now += 50  # Ray and the workers starting: not the trials' pace
    assert view.eta() is None
    view.started("t1", label="dense, seed 0")
    clock.now += 8
    view.batch("t1", epoch=1, epochs=4, batch=1, batches=40, images_per_s=2500.0)
    assert view.eta() is None  # 1/160 of a trial: the pace is mostly the trial's start-up
    clock.now += 22
    view.batch("t1", epoch=2, epochs=4, batch=20, batches=40, images_per_s=2500.0)
    # 1.5 of 4 epochs done in 30 s: the trial is 3/8 done, 3.625 trials remain at 80 s each
    assert view.eta() == pytest.approx(3.625 * 30 / 0.375)
    out.print(view._render())
    text = out.export_text(clear=False)
    assert "dense, seed 0" in text and "epoch 2/4, batch 20/40, 2,500 img/s" in text
    view.finished("t1", {"status": "completed", "test_acc": 0.5, "best_val_acc": 0.5})
    out.print(view._render())
    assert "1/4" in out.export_text(clear=False) and "ETA 1m30s" in out.export_text(clear=False)  # 3 left at 30 s each


def test_log_view_prints_timestamped_lines_and_throttles_batches():
    out, clock = console(False), Clock()
    view = StudyView(out, "smoke", total=2, done=1, clock=clock)
    assert view.live is None
    view.started("t1", label="dense, seed 1")
    for batch in range(1, 11):
        clock.now += 1
        view.batch("t1", epoch=1, epochs=1, batch=batch, batches=10)
    lines = out.export_text(clear=False).splitlines()
    assert sum("batch" in line for line in lines) == 1  # once a minute at most, not per batch
    view.finished("t1", {"status": "diverged", "error": "loss is nan at epoch 1"})
    last = out.export_text(clear=False).splitlines()[-1]
    assert last.endswith("dense, seed 1: diverged: loss is nan at epoch 1 [2/2]")
    assert last[2] == ":" and last[5] == ":"  # HH:MM:SS prefix


def test_log_lines_are_not_wrapped_at_the_console_width():
    out = console(False)
    view = StudyView(out, "smoke", total=1, done=0)
    view.finished("t1", {"status": "failed", "error": "ValueError: " + "x" * 200})
    assert "x" * 200 in out.export_text(clear=False)


def test_trials_are_labelled_from_their_trial_file(tmp_path):
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "config.json").write_text(json.dumps(
        {"trial_id": "t1", "assignment": {"pattern": "partial", "depth": 40}, "config": {"seed": 2}}))
    out = console(False)
    view = StudyView(out, "s", total=2, done=0, describe=lambda t: label_from_trial_file(tmp_path / t / "config.json"))
    view.started("t1")
    view.finished("t2", None)
    text = out.export_text()
    assert "partial, depth=40, seed 2: started" in text and "t2: ended (no result recorded) [1/2]" in text


def test_summary_table_gives_fractions_with_the_reports_interval():
    trials = pd.DataFrame({"pattern": ["dense", "dense", "dense", "partial"],
                           "status": ["completed", "completed", "completed", "failed"],
                           "test_acc": [0.80, 0.82, 0.84, None], "params": [1000, 1000, 1000, 800]})
    out = console(False, width=120)
    out.print(summary_table(trials, ["pattern"], title="smoke [x]"))
    text = out.export_text(clear=False)
    assert "smoke [x]" in text
    half = 4.302653 * 0.02 / 3 ** 0.5  # t(0.975, 2) * s / sqrt(n)
    assert "0.8200" in text and f"[{0.82 - half:.4f}, {0.82 + half:.4f}]" in text
    row = next(line for line in text.splitlines() if "partial" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == ["partial", "1", "-", "-", "-", "1"]


def test_summary_table_never_pools_different_configurations():
    # an Optuna search groups by pattern only; depth varies inside a pattern: one row per depth
    trials = pd.DataFrame({"pattern": ["dense"] * 3, "depth": [10, 10, 40], "seed": [0, 1, 0],
                           "status": ["completed"] * 3, "test_acc": [0.5, 0.6, 0.9], "params": [10, 10, 90]})
    out = console(False, width=80)  # a log: the interval column is not wrapped
    out.print(summary_table(trials, ["pattern"], title="search"))
    text = out.export_text()
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│ dense")]
    assert [r[:3] for r in rows] == [["dense", "10", "2"], ["dense", "40", "1"]]
    assert rows[0][4] == "[0.0000, 1.0000]"


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
    assert "t1: failed: ValueError: [/] closes [bold]nothing [1/1]" in out.getvalue()


def test_summary_table_groups_with_markup():
    trials = pd.DataFrame({"pattern": ["[/]", "[bold]"], "status": ["completed"] * 2,
                           "test_acc": [0.5, 0.6], "params": [10, 20]})
    console, out = _console()
    console.print(summary_table(trials, ["pattern"], title="t"))
    assert "[/]" in out.getvalue() and "[bold]" in out.getvalue()


def test_summary_table_shows_a_factor_left_unset_for_some_trials():
    # the span curve's `max_span: null` (no limit) level: a float column with NaN crashed the end-of-run summary
    trials = pd.DataFrame({"pattern": ["span"] * 4, "pattern_options.max_span": [1, 1, None, None], "seed": [0, 1, 0, 1],
                           "status": ["completed"] * 4, "test_acc": [0.5, 0.6, 0.8, 0.9], "params": [10, 10, 20, 20]})
    out = console(False, width=100)
    out.print(summary_table(trials, ["pattern", "pattern_options.max_span"], title="span"))
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.export_text().splitlines() if line.startswith("│ span")]
    assert [r[:4] for r in rows] == [["span", "1.0", "2", "0.5500"], ["span", "-", "2", "0.8500"]]


def test_summary_table_orders_numeric_levels_by_value():
    trials = pd.DataFrame({"pattern": ["dense"] * 3, "growth": [12, 9, 10], "status": ["completed"] * 3,
                           "test_acc": [0.5, 0.6, 0.7], "params": [10, 20, 30]})
    out = console(False, width=100)
    out.print(summary_table(trials, ["pattern", "growth"], title="growth"))
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.export_text().splitlines() if line.startswith("│ dense")]
    assert [r[1] for r in rows] == ["9", "10", "12"]  # as text, 10 and 12 sorted before 9


def test_a_language_model_shows_its_intervals_and_results_in_bits_per_byte():
    out, clock = console(False, width=200), Clock()
    view = StudyView(out, "lm", total=1, done=0, clock=clock)
    view.started("t1", label="prenorm, seed 0")
    view.epoch("t1", {"epoch": 2, "epochs": 5, "val_acc": 0.41, "val_bpb": 3.0312})
    view.finished("t1", {"status": "completed", "test_bpb": 2.6454, "best_val_bpb": 2.6987, "test_acc": 0.5})
    text = out.export_text(clear=False)
    assert "prenorm, seed 0: interval 2/5, val 3.031 bpb" in text
    assert "prenorm, seed 0: completed, test 2.645 bpb, best val 2.699 bpb [1/1]" in text
