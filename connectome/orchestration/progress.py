"""What a running study shows: a study bar with an ETA, one line per running trial (epoch,
batch, img/s), a permanent line per finished trial (its result or its error), a final summary.

Trials are named by what they are (connectome.store.labels.trial_label: pattern, the factors the study varies, seed),
not by their hash. Metrics are printed as fractions, as they are stored. Text from users and
trials (names, errors) is never parsed as rich markup: it is passed as `Text`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from connectome.console import format_duration
from connectome.store.labels import is_missing

# Without a terminal, a trial's batch progress is printed at most this often (seconds);
# on a terminal, the live display redraws a trial's batch progress at most this often.
BATCH_LINE_INTERVAL = 60.0
BATCH_REDRAW_INTERVAL = 0.5
# Trials' worth of progress before an ETA is shown. Before it, a trial's start-up (data, model,
# first batches) dominates the pace: a 7-minute study showed "ETA 1h38m" after 16 batches.
MIN_ETA_PROGRESS = 0.25


@dataclass
class _Running:
    """A running trial as the view shows it."""

    label: str
    text: str = "starting"
    fraction: float = 0.0  # of its epochs, for the ETA
    last_line: float = -math.inf  # when a batch line was last printed (non-terminal mode)


class StudyView:
    """Progress of a study: a live display on a terminal, plain timestamped lines otherwise.

    The runner calls `started`, `epoch`, `batch` (optional, from inside long epochs) and
    `finished`. Trials are named by `labels` (trial id -> `trial_label`), else by `describe`
    (trial id -> label or None, e.g. `label_from_trial_file` of its config.json), else by id.
    """

    def __init__(self, console: Console, name: str, total: int, done: int,
                 labels: Mapping[str, str] | None = None,
                 describe: Callable[[str], str | None] | None = None,
                 clock: Callable[[], float] = time.monotonic, transient: bool = False):
        self.console = console
        self.total = total
        self.done_before = done  # trials finished in earlier runs: they do not time this one
        self.finished_now = 0
        self.labels = dict(labels or {})
        self.describe = describe
        self.running: dict[str, _Running] = {}
        self.clock = clock
        # The pace is timed from the first trial's start: Ray's and the workers' start-up is
        # neither trial progress nor repeated per trial, and would inflate the first ETAs.
        self.start: float | None = None
        self.progress = Progress(
            TextColumn("{task.description}", markup=False, style="bold"), BarColumn(),
            TextColumn("{task.fields[count]}", markup=False), TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}", markup=False), console=console, get_time=clock,
        )
        self.task = self.progress.add_task(name, total=total, completed=done, count=f"{done}/{total}", eta="")
        # transient: the live display is erased at the end (`connectome train` prints its own summary)
        self.live = (Live(self._render(), console=console, refresh_per_second=2, transient=transient)
                     if console.is_terminal else None)

    def __enter__(self) -> "StudyView":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def label(self, trial_id: str) -> str:
        """The trial's label, or its id when none is known."""
        if trial_id not in self.labels and self.describe is not None:
            found = self.describe(trial_id)
            if found:
                self.labels[trial_id] = found
        return self.labels.get(trial_id) or trial_id

    def started(self, trial_id: str, label: str | None = None) -> None:
        """A trial began (or resumed)."""
        if label:
            self.labels[trial_id] = label
        if self.start is None:
            self.start = self.clock()
        self.running[trial_id] = _Running(self.label(trial_id))
        self._show(f"{self.label(trial_id)}: started")

    def epoch(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """A trial ended an epoch: `result` holds `epoch` (1-based), `epochs`, `val_acc`."""
        trial = self._trial(trial_id)
        epoch, epochs = result.get("epoch"), result.get("epochs")
        if _number(result.get("val_bpb")):  # a language model: an evaluation interval, in bits per byte
            trial.text = f"interval {epoch}/{epochs}, val {float(result['val_bpb']):.3f} bpb"
        else:
            trial.text = f"epoch {epoch}/{epochs}, val error {_error_points(result, 'val_error', 'val_acc')} points"
        if _number(epoch) and _number(epochs) and epochs:
            trial.fraction = min(float(epoch) / float(epochs), 1.0)
        self._show(f"{trial.label}: {trial.text}")

    def batch(self, trial_id: str, *, epoch: int, epochs: int, batch: int, batches: int,
              images_per_s: float | None = None, tokens_per_s: float | None = None) -> None:
        """Progress inside an epoch: `batch` of `batches` done in epoch `epoch` (1-based) of `epochs`
        (a language model's: steps of an evaluation interval, with `tokens_per_s`)."""
        trial = self._trial(trial_id)
        trial.text = batch_text(epoch, epochs, batch, batches, images_per_s, tokens_per_s)
        if epochs and batches:
            trial.fraction = min((epoch - 1 + batch / batches) / epochs, 1.0)
        now = self.clock()
        if now - trial.last_line < (BATCH_LINE_INTERVAL if self.live is None else BATCH_REDRAW_INTERVAL):
            return  # a log gets a batch line now and then, a terminal a redraw, not one per batch
        trial.last_line = now
        self._show(f"{trial.label}: {trial.text}")

    def finished(self, trial_id: str, row: Mapping[str, Any] | None) -> None:
        """A trial ended; its row (None if unknown) says how. Its line stays on screen."""
        self.running.pop(trial_id, None)
        self.finished_now += 1
        self._refresh_bar()
        self._print(f"{self.label(trial_id)}: {_outcome(row)} [{self.finished_count}/{self.total}]")
        self._show(None)

    @property
    def finished_count(self) -> int:
        """Trials finished, in this run and earlier ones."""
        return self.done_before + self.finished_now

    def eta(self) -> float | None:
        """Seconds left at this run's pace so far (finished trials plus the running ones' progress)."""
        units = self.finished_now + sum(t.fraction for t in self.running.values())
        elapsed = self.clock() - self.start if self.start is not None else 0.0
        if units < MIN_ETA_PROGRESS or elapsed <= 0:
            return None
        remaining = max(self.total - self.finished_count - sum(t.fraction for t in self.running.values()), 0.0)
        return remaining * elapsed / units

    def _trial(self, trial_id: str) -> _Running:
        """The running entry of a trial, created if the runner skipped `started`."""
        if trial_id not in self.running:
            self.running[trial_id] = _Running(self.label(trial_id))
        return self.running[trial_id]

    def _refresh_bar(self) -> None:
        eta = self.eta()
        running = sum(t.fraction for t in self.running.values())  # the bar moves inside trials too
        self.progress.update(self.task, completed=self.finished_count + running,
                             count=f"{self.finished_count}/{self.total}",
                             eta="" if eta is None else f"ETA {format_duration(eta)}")

    def _render(self) -> Group:
        lines = Table.grid(padding=(0, 2))
        for trial in self.running.values():
            lines.add_row(Text(f"  {trial.label}"), Text(trial.text))
        return Group(self.progress, lines)

    def _show(self, line: str | None) -> None:
        """Redraw the live display, or print a timestamped line when there is no terminal."""
        self._refresh_bar()
        if self.live is not None:
            self.live.update(self._render())
        elif line:
            self._print(line)

    def _print(self, line: str) -> None:
        """A permanent line (above the live display on a terminal), never parsed as markup."""
        stamp = "" if self.live is not None else f"{time.strftime('%H:%M:%S')} "
        eta = self.eta()
        pending = self.live is None and eta is not None and self.finished_count < self.total
        suffix = f" ETA {format_duration(eta)}" if pending else ""
        self.console.print(Text(f"{stamp}{line}{suffix}"), soft_wrap=True)


def _outcome(row: Mapping[str, Any] | None) -> str:
    """`completed, test error 6.88 points, best val error 6.50 points` or `failed: <the error's last line>`."""
    if not row:
        return "ended (no result recorded)"
    status = row.get("status") or "ended"
    if status == "completed" and row.get("stopped_early"):
        return (f"stopped early at epoch {row.get('epochs_completed')}, "
                f"best val error {_error_points(row, 'best_val_acc')} points")
    if status == "completed" and _number(row.get("test_bpb")):  # a language model
        return f"completed, test {float(row['test_bpb']):.3f} bpb, best val {float(row['best_val_bpb']):.3f} bpb"
    if status == "completed":  # errors in points, as the summary and the report give them (analysis/units.py)
        return (f"completed, test error {_error_points(row, 'test_error', 'test_acc')} points, "
                f"best val error {_error_points(row, 'best_val_acc')} points")
    error = str(row.get("error") or "").strip()
    return f"{status}: {error.splitlines()[-1]}" if error else status


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fraction(value: Any) -> str:
    """A metric fraction (accuracy, error) with 4 decimals, as stored; '-' when unknown."""
    return f"{float(value):.4f}" if _number(value) else "-"


def _error_points(row: Mapping[str, Any], *metrics: str) -> str:
    """The first recorded of `metrics` (an error or an accuracy fraction) as an error in points; '-' when unknown."""
    from connectome.analysis.units import ACCURACIES, format_points

    metric = next((m for m in metrics if _number(row.get(m))), None)
    if metric is None:
        return "-"
    value = float(row[metric])
    return format_points(100.0 * (1.0 - value) if metric in ACCURACIES else 100.0 * value)


def _metric_text(metric: str, value: float) -> str:
    """A summary cell: an error in points with fixed decimals, a fraction with 4."""
    from connectome.analysis.units import format_points, is_points

    return format_points(value) if is_points(metric) else _fraction(value)


def summary_table(trials, group_by: list[str], title: str, metric: str = "test_acc") -> Table:
    """Per configuration: trials, mean `metric` (a fraction) with its 95% t interval, params, failures.

    Rows group by `group_by` plus any factor that still varies inside those groups (an Optuna
    search's depth and growth), so trials of different configurations are never pooled. The
    interval is the report's (connectome.analysis.summarize), over seeds.
    """
    table = Table(title=Text(title))
    if trials is None or len(trials) == 0:
        return _summary_columns(table, group_by, metric)
    from connectome.analysis.stats import summarize

    keys = _summary_keys(trials, group_by)
    _summary_columns(table, keys, metric)
    # every level as text, a missing one as "-" (astype(str) keeps NaN a float under pandas' string dtype)
    frame = trials.assign(**{k: trials[k].map(lambda v: "-" if is_missing(v) else str(v)) for k in keys})
    ok = frame[frame["status"] == "completed"] if "status" in frame else frame
    stats = _group_stats(ok, keys, metric, summarize)
    groups = [((v if isinstance(v, tuple) else (v,)), g) for v, g in frame.groupby(keys, dropna=False)] if keys \
        else [((), frame)]
    for values, group in sorted(groups, key=lambda item: tuple(_level_order(v) for v in item[0])):
        done = group[group["status"] == "completed"] if "status" in group else group
        mean, low, high = stats.get(values, (math.nan,) * 3)
        params = done["params"].astype(float).mean() if "params" in done and len(done) else math.nan
        interval = "-" if math.isnan(low) else f"[{_metric_text(metric, low)}, {_metric_text(metric, high)}]"
        table.add_row(*(Text(v) for v in values), str(len(group)), _metric_text(metric, mean), interval,
                      "-" if math.isnan(params) else f"{params:,.0f}", str(len(group) - len(done)))
    return table


def _level_order(text: str) -> tuple:
    """Sort key of a level shown as text: numbers by value (9 before 10), then text, then "-"."""
    if text == "-":
        return (2, 0.0, "")
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _summary_keys(trials, group_by: list[str]) -> list[str]:
    """`group_by` (those present) plus the factors that vary within its groups."""
    from connectome.analysis.results import factor_columns

    keys = [k for k in group_by if k in trials.columns]
    factors = [c for c in factor_columns(trials) if c not in keys]
    if not keys or not factors:
        return keys + factors
    frame = trials.astype({c: str for c in [*keys, *factors]})
    varying = frame.groupby(keys, dropna=False)[factors].nunique(dropna=False).gt(1).any()
    return keys + [c for c in factors if varying[c]]


def _summary_columns(table: Table, keys: list[str], metric: str) -> Table:
    for key in keys:
        table.add_column(Text(key))
    for col in ("trials", f"{metric} mean", "95% CI", "params", "not completed"):
        table.add_column(Text(col), justify="right", no_wrap=col == "95% CI")
    return table


def _group_stats(ok, keys: list[str], metric: str, summarize) -> dict[tuple, tuple[float, float, float]]:
    """(mean, ci_low, ci_high) of the metric per group of completed trials."""
    if metric not in ok or ok.empty:
        return {}
    data = ok.assign(**{metric: ok[metric].astype(float)})
    out = summarize(data, by=keys, metric=metric)
    return {tuple(r[k] for k in keys): (r["mean"], r["ci_low"], r["ci_high"]) for _, r in out.iterrows()}


def batch_text(epoch: int, epochs: int, batch: int, batches: int, images_per_s: float | None = None,
               tokens_per_s: float | None = None) -> str:
    """`epoch 2/5, batch 10/40, 950 img/s`, or a language model's `interval 2/5, step 10/40, 9,500 tokens/s`."""
    if _number(tokens_per_s):
        return f"interval {epoch}/{epochs}, step {batch}/{batches}, {tokens_per_s:,.0f} tokens/s"
    speed = f", {images_per_s:,.0f} img/s" if _number(images_per_s) else ""
    return f"epoch {epoch}/{epochs}, batch {batch}/{batches}{speed}"
