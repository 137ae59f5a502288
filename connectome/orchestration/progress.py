"""What a running study shows: a study-level bar, one line per running trial, a final summary."""
from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class StudyView:
    """Progress of a study: a live display on a terminal, plain lines otherwise (logs, jobs)."""

    def __init__(self, console: Console, name: str, total: int, done: int):
        self.console = console
        self.total = total
        self.running: dict[str, str] = {}
        self.progress = Progress(
            TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task(name, total=total, completed=done)
        self.live = Live(self._render(), console=console, refresh_per_second=2) if console.is_terminal else None

    def __enter__(self) -> "StudyView":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _render(self) -> Group:
        lines = Table.grid(padding=(0, 2))
        for trial_id, text in self.running.items():
            lines.add_row(f"  {trial_id}", text)
        return Group(self.progress, lines)

    def _update(self, line: str | None = None) -> None:
        if self.live is not None:
            self.live.update(self._render())
        elif line:
            self.console.print(f"{time.strftime('%H:%M:%S')} {line}", highlight=False)

    def started(self, trial_id: str) -> None:
        """A trial began (or resumed)."""
        self.running[trial_id] = "starting"
        self._update(f"{trial_id}: started")

    def epoch(self, trial_id: str, result: dict[str, Any]) -> None:
        """A trial reported an epoch."""
        text = f"epoch {result.get('epoch')}/{result.get('epochs')}  val acc {_pct(result.get('val_acc'))}"
        self.running[trial_id] = text
        self._update(f"{trial_id}: {text}")

    def finished(self, trial_id: str, row: dict[str, Any] | None) -> None:
        """A trial ended; its row (None if unknown) says how."""
        self.running.pop(trial_id, None)
        self.progress.advance(self.task)
        status = (row or {}).get("status", "ended")
        detail = f"test acc {_pct(row.get('test_acc'))}" if row and status == "completed" else (row or {}).get("error") or ""
        done = int(self.progress.tasks[0].completed)
        self._update(f"{trial_id}: {status} {detail} [{done}/{self.total}]")


def _pct(value: Any) -> str:
    """A fraction as a percentage, or '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * float(value):.2f}%"


def summary_table(trials, group_by: list[str], title: str) -> Table:
    """Mean +- std of test accuracy over seeds per group, with params and trial counts."""
    table = Table(title=title)
    for key in group_by:
        table.add_column(key)
    for col in ("trials", "test acc (mean ± std)", "params", "failed"):
        table.add_column(col, justify="right")
    if trials is None or len(trials) == 0:
        return table
    keys = [k for k in group_by if k in trials.columns]
    frame = trials.copy()
    for key in keys:
        frame[key] = frame[key].astype(str)
    for values, group in frame.groupby(keys, sort=True, dropna=False) if keys else [((), frame)]:
        values = values if isinstance(values, tuple) else (values,)
        ok = group[group["status"] == "completed"] if "status" in group else group
        acc = ok["test_acc"].astype(float) if "test_acc" in ok else None
        mean = acc.mean() if acc is not None and len(acc) else float("nan")
        std = acc.std(ddof=1) if acc is not None and len(acc) > 1 else 0.0
        params = ok["params"].astype(float).mean() if "params" in ok and len(ok) else float("nan")
        table.add_row(
            *map(str, values), str(len(group)),
            "-" if math.isnan(mean) else f"{100 * mean:.2f} ± {100 * std:.2f}",
            "-" if math.isnan(params) else f"{params:,.0f}",
            str(len(group) - len(ok)),
        )
    return table
