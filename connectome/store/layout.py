"""The results directory of a study: where every file lives and how it is read and written.

results/<study>/
  layout.json           layout version, study name and definition fingerprint (and its history)
  study.yaml            the study file as given; study.resolved.json: validated, after --set
  plan.json             the planned trial ids of a grid (for counting missing trials)
  trials.jsonl          journal: one line per finished trial (row + epochs), appended by the driver
  trials.parquet        compacted rows (one per trial, the last journal line of each wins)
  epochs.parquet        compacted per-epoch rows
  compacted.json        how much of the journal the parquet files hold (byte offset)
  optuna.db             the Optuna storage of an optuna search (or optuna.journal, or a database)
  driver.lock           the running driver (host, pid, heartbeat); see connectome/store/lock.py
  driver.json           this driver and its local Ray node (for the next driver to clean up after a kill)
  prescreen.csv         every candidate of a pre-screened grid with its proxy score and rank
  report.md, report.html, figures/   `connectome report`; lesion.parquet: `connectome lesion`
  tensorboard/          TensorBoard event files (tracking.tensorboard: true)
  export.parquet        `connectome export` (a replay table); replay.csv: `connectome export --replay`
  trials/<trial_id>/    config.json (written when planned), checkpoint.pt (each epoch),
                        result.json (row + epochs, when the trial ends), spec.json, model.pt,
                        progress.json (mid-epoch progress of a running trial)
  ray/tune-<time>[-<wave>]/  Ray Tune's own state of each Tune run; only the latest is kept whole
                        (earlier ones are pruned, connectome/orchestration/waves.py)

Recording a trial is O(1): one line appended to the journal. The parquet files are rewritten
only when the journal tail has grown as large as what they hold (and at the end of a run), so
the total compaction work stays O(N log N) bytes at worst and O(1) amortised per trial in practice; readers take the parquet files
plus the journal tail. Nothing lists `trials/` per trial. A corrupt file is moved aside
(`NAME.corrupt-TIME`) with a warning and treated as missing.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from connectome.errors import ConfigError
from connectome.files import append_line, atomic_write, write_atomic

LAYOUT_VERSION = 2
# The journal tail is compacted once it is this large and as large as the compacted part, so
# each byte is compacted O(log N) times over a study's life and recording stays O(1) amortised.
MIN_COMPACT_BYTES = 256 * 1024

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialFiles:
    """The files of one trial directory."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "config.json"

    @property
    def result(self) -> Path:
        return self.dir / "result.json"

    @property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoint.pt"

    @property
    def spec(self) -> Path:
        return self.dir / "spec.json"

    @property
    def model(self) -> Path:
        return self.dir / "model.pt"

    @property
    def progress(self) -> Path:
        return self.dir / "progress.json"

    @property
    def trial_id(self) -> str:
        return self.dir.name


class StudyDir:
    """Paths and records inside results/<study>/."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"StudyDir({str(self.root)!r})"

    # ------------------------------------------------------------ paths

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    def trial(self, trial_id: str) -> TrialFiles:
        """The files of one trial; ConfigError for an id that is no trial id (`..`, a path, a list)."""
        if not is_trial_id(trial_id):
            raise ConfigError(f"{self.root}: {trial_id!r} is not a trial id (letters, digits, '_', '.', '+', '-'); "
                              "a file of this results directory was edited or written by something else")
        return TrialFiles(self.trials / trial_id)

    def trial_configs(self) -> Iterator[Path]:
        """The config.json of every trial folder that has one (O(N) files: not per trial)."""
        folders = self.trials.iterdir() if self.trials.is_dir() else ()
        return (files.config for files in map(TrialFiles, folders) if files.config.is_file())

    @property
    def layout_file(self) -> Path:
        return self.root / "layout.json"

    @property
    def study_file(self) -> Path:
        return self.root / "study.yaml"

    @property
    def resolved_file(self) -> Path:
        return self.root / "study.resolved.json"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def journal(self) -> Path:
        return self.root / "trials.jsonl"

    @property
    def compacted_file(self) -> Path:
        return self.root / "compacted.json"

    @property
    def trials_parquet(self) -> Path:
        return self.root / "trials.parquet"

    @property
    def epochs_parquet(self) -> Path:
        return self.root / "epochs.parquet"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def optuna_journal(self) -> Path:
        return self.root / "optuna.journal"

    @property
    def lock_file(self) -> Path:
        return self.root / "driver.lock"

    @property
    def tune_dir(self) -> Path:
        return self.root / "ray"

    @property
    def driver_file(self) -> Path:
        return self.root / "driver.json"

    @property
    def prescreen_file(self) -> Path:
        return self.root / "prescreen.csv"

    @property
    def export_file(self) -> Path:
        return self.root / "export.parquet"

    @property
    def replay_file(self) -> Path:
        return self.root / "replay.csv"

    @property
    def lesion_file(self) -> Path:
        return self.root / "lesion.parquet"

    @property
    def report_file(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def figure(self, stem: str) -> Path:
        """figures/<stem>, without a suffix (save_figure writes .png and .svg)."""
        return self.figures / stem

    # ------------------------------------------------------------ layout stamp and plan

    def layout(self) -> dict[str, Any] | None:
        """The layout stamp; {"layout": 1} for a directory of trials written before stamps existed.

        ConfigError for a layout.json that is no stamp: guessing its layout would misread the results."""
        if not self.layout_file.exists():
            return {"layout": 1} if self.trials.is_dir() and any(self.trials.iterdir()) else None
        stamp = read_json(self.layout_file)
        version = stamp.get("layout") if isinstance(stamp, dict) else None
        if not isinstance(version, int) or isinstance(version, bool):
            raise ConfigError(f"{self.layout_file}: not a layout stamp (a JSON object with an integer `layout`); "
                              "restore it, or use --restart to move these results aside and start over")
        return stamp

    def stamp(self, **fields: Any) -> None:
        """Write layout.json with the current layout version and the given fields."""
        write_json(self.layout_file, {"layout": LAYOUT_VERSION, **fields})

    def write_plan(self, trial_ids: list[str], duplicates: dict[str, str] | None = None) -> None:
        """plan.json: the grid's trial ids, and the planned trials skipped as duplicates (id -> original)."""
        write_json(self.plan_file, {"trials": trial_ids, "duplicates": dict(duplicates or {})})

    def planned_ids(self) -> list[str] | None:
        """Trial ids of the grid plan, None if no plan was written (Optuna, or a bare trainer dir)."""
        plan = read_json(self.plan_file)
        return list(plan["trials"]) if isinstance(plan, dict) and "trials" in plan else None

    def planned_duplicates(self) -> dict[str, str]:
        """Grid trials the planner skipped as duplicates: trial id -> the trial it repeats (`duplicate_of`)."""
        plan = read_json(self.plan_file)
        found = plan.get("duplicates") if isinstance(plan, dict) else None
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    # ------------------------------------------------------------ the journal

    def record(self, entry: dict[str, Any]) -> None:
        """Append a finished trial's entry ({"row": ..., "epochs": [...]}) to the journal: O(1)."""
        append_line(self.journal, json.dumps(clean_json(entry)))

    def journal_entries(self, offset: int = 0, end: int | None = None) -> Iterator[dict[str, Any]]:
        """Journal entries between two byte offsets; a torn line (killed writer) is skipped."""
        if not self.journal.exists():
            return
        with open(self.journal, "rb") as f:
            f.seek(offset)
            data = f.read() if end is None else f.read(max(end - offset, 0))
        for number, line in enumerate(data.splitlines(), 1):
            try:
                entry = json.loads(line)
            except ValueError:
                log.warning("%s: skipped an unreadable line (%d after byte %d): a writer was killed mid-line",
                            self.journal, number, offset)
                continue
            row = entry.get("row") if isinstance(entry, dict) else None
            if isinstance(row, dict) and is_trial_id(row.get("trial_id")):
                yield entry
            else:
                log.warning("%s: skipped line %d after byte %d: not a trial's result (no valid trial id)",
                            self.journal, number, offset)

    def latest_entries(self, offset: int = 0, end: int | None = None) -> dict[str, dict[str, Any]]:
        """trial_id -> its last journal entry (a retried trial's newer result replaces the older)."""
        return {e["row"]["trial_id"]: e for e in self.journal_entries(offset, end)}

    def statuses(self) -> dict[str, str]:
        """trial_id -> status of its latest recorded result."""
        return {tid: e["row"].get("status") for tid, e in self.latest_entries().items()}

    def final_ids(self) -> set[str]:
        """Trials with a final result (completed or diverged): never run again."""
        from connectome.store.record import FINAL_STATUSES

        return {tid for tid, status in self.statuses().items() if status in FINAL_STATUSES}

    def scan_results(self) -> dict[str, dict[str, Any]]:
        """trial_id -> result.json entry of every trial folder (O(N) files: for repair and bare dirs only)."""
        if not self.trials.is_dir():
            return {}
        found = (read_trial_result(TrialFiles(d)) for d in sorted(self.trials.iterdir()) if d.is_dir())
        return {e["row"].get("trial_id") or "?": e for e in found if e is not None}

    # ------------------------------------------------------------ tables

    def compaction_due(self) -> bool:
        """True when the journal tail has grown as large as the compacted part (O(1) to decide)."""
        offset = self.compacted_offset()
        size = self.journal.stat().st_size if self.journal.exists() else 0
        return size - offset >= max(MIN_COMPACT_BYTES, offset)

    def compacted_offset(self) -> int:
        """How much of the journal the parquet files hold; 0 (read the whole journal) for a bad compacted.json.

        compacted.json is a cache of the compaction: one that is no offset at a line end of the
        journal is ignored with a warning, and the next compaction rewrites it."""
        if not self.compacted_file.exists():
            return 0
        state = read_json(self.compacted_file)
        offset = state.get("offset", 0) if isinstance(state, dict) else None
        if isinstance(offset, int) and not isinstance(offset, bool) and self._line_end(offset):
            return offset
        log.warning("%s: not an offset at a line end of %s; ignored (the tables are read from the whole journal "
                    "and the next compaction rewrites it)", self.compacted_file, self.journal.name)
        return 0

    def _line_end(self, offset: int) -> bool:
        """Whether a byte offset is 0 or just after a newline of the journal."""
        if offset <= 0:
            return offset == 0
        try:
            with open(self.journal, "rb") as f:
                f.seek(offset - 1)
                return f.read(1) == b"\n"
        except OSError:
            return False

    def compact(self) -> None:
        """Rewrite trials.parquet / epochs.parquet from the whole journal (last entry per trial)."""
        from connectome.testing.faults import fault

        offset = self.journal.stat().st_size if self.journal.exists() else 0
        entries = list(self.latest_entries(end=offset).values())
        trials, epochs = frames(entries)
        _write_parquet(trials, self.trials_parquet)
        fault("compact")
        _write_parquet(epochs, self.epochs_parquet)
        write_json(self.compacted_file, {"offset": offset, "trials": len(entries)})

    def compact_or_warn(self) -> bool:
        """compact(); a file system that refuses (a full disk) only warns: the journal still holds every row."""
        try:
            self.compact()
            return True
        except OSError as err:
            log.warning("%s: trials.parquet and epochs.parquet not rewritten (%s); every row stays readable from %s",
                        self.root, err.strerror or err, self.journal.name)
            return False

    def frames(self):
        """(trials, epochs) DataFrames: the compacted parquet files plus the journal tail."""
        import pandas as pd

        offset = self.compacted_offset()
        trials, epochs = _read_parquet(self.trials_parquet), _read_parquet(self.epochs_parquet)
        if offset and (trials is None or epochs is None):
            offset = 0  # a compacted table is gone or corrupt: the whole journal has every row
        if not self.journal.exists():
            # a results dir of an older layout (parquet only), or trial dirs of `connectome train`
            tail = self.scan_results() if trials is None else {}
        else:
            tail = self.latest_entries(offset)
            if not offset:  # the journal holds everything
                trials = epochs = None
        trials = pd.DataFrame() if trials is None else trials
        epochs = pd.DataFrame() if epochs is None else epochs
        if tail:
            new_trials, new_epochs = frames(list(tail.values()))
            keep = ~trials["trial_id"].isin(tail) if "trial_id" in trials else slice(None)
            keep_e = ~epochs["trial_id"].isin(tail) if "trial_id" in epochs else slice(None)
            trials = _concat(pd, trials[keep], new_trials)
            epochs = _concat(pd, epochs[keep_e], new_epochs)
        return _sorted(trials, ["trial_id"]), _sorted(epochs, ["trial_id", "epoch"])


# A trial id: the pattern name and a hash (connectome.training.plan.trial_id); never a path.
TRIAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def is_trial_id(value: Any) -> bool:
    """Whether a value read from a file can be a trial id (so it can name a folder of trials/)."""
    return isinstance(value, str) and len(value) <= 255 and TRIAL_ID.fullmatch(value) is not None


# ---------------------------------------------------------------- one trial's files


def write_trial_config(files: TrialFiles, config: dict[str, Any], *, study: str | None = None,
                       assignment: dict[str, Any] | None = None, planned: dict[str, Any] | None = None) -> None:
    """config.json: the trial's resolved config, the search values that produced it and its plan.

    `planned` is connectome.training.plan.PlannedTrial.to_json(): what the config builds (files of
    layout 2 lack it; readers recompute it from `config`).
    """
    write_json(files.config, {"layout": LAYOUT_VERSION, "trial_id": files.trial_id, "study": study,
                              "assignment": assignment or {}, "config": config, "planned": planned})


def read_trial_config(files: TrialFiles) -> dict[str, Any] | None:
    """config.json's content, None if missing or corrupt (moved aside)."""
    data = read_json_checked(files.config)
    return data if isinstance(data, dict) and isinstance(data.get("config"), dict) else None


def trial_entry(row: dict[str, Any], epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """What result.json holds (and the journal records): the trial's flat row and per-epoch rows."""
    return clean_json({"layout": LAYOUT_VERSION, "row": row, "epochs": epochs})


def write_trial_result(files: TrialFiles, row: dict[str, Any], epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """result.json: the trial's flat row and per-epoch rows; returns the entry written."""
    from connectome.testing.faults import full_disk

    entry = trial_entry(row, epochs)
    full_disk(files.result)
    write_json(files.result, entry)
    return entry


def read_trial_result(files: TrialFiles) -> dict[str, Any] | None:
    """result.json's entry, None if missing, corrupt or another trial's (such a file is moved aside with a warning)."""
    data = read_json_checked(files.result)
    if data is None:
        return None
    if not (isinstance(data, dict) and isinstance(data.get("row"), dict)):
        set_aside(files.result, "not a trial result")
        return None
    owner = data["row"].get("trial_id")
    if owner is not None and owner != files.trial_id:  # copied from another trial's folder
        set_aside(files.result, f"the result of trial {owner!r}, not of {files.trial_id!r}")
        return None
    return data


# ---------------------------------------------------------------- JSON files


def clean_json(value: Any) -> Any:
    """NaN and infinities become null, so every file is standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def write_json(path: Path, obj: Any) -> None:
    """Atomic, human-readable, standard JSON."""
    write_atomic(path, json.dumps(clean_json(obj), indent=1, default=str) + "\n")


def read_json(path: Path) -> Any | None:
    """Parsed JSON; None if missing or unreadable (left in place: for files others may be writing)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_json_checked(path: Path) -> Any | None:
    """Parsed JSON; None if missing; a corrupt file is moved aside with a warning and reads as missing."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        set_aside(path, f"unreadable JSON ({err})")
        return None


def set_aside(path: Path, why: str) -> Path:
    """Rename a bad file to NAME.corrupt-TIME (kept for inspection) and warn."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, target)
    log.warning("%s: %s; moved aside to %s and treated as missing", path, why, target.name)
    return target


# ---------------------------------------------------------------- frames


def frames(entries: list[dict[str, Any]]):
    """(trials, epochs) DataFrames from journal entries."""
    import pandas as pd

    from connectome.store.record import order_columns

    trials = pd.DataFrame([e["row"] for e in entries])
    if len(trials.columns):
        trials = trials[order_columns(trials.columns)]
    epochs = pd.DataFrame([{**ep, "trial_id": e["row"]["trial_id"]} for e in entries for ep in e.get("epochs") or []])
    return _uniform(trials), _uniform(epochs)


def _uniform(df):
    """Columns holding mixed Python types become strings, so parquet takes them."""
    for col in df.columns:
        if df[col].dtype == object:
            types = {type(v) for v in df[col] if v is not None and v == v}
            if len(types) > 1:
                df[col] = df[col].map(lambda v: None if v is None or v != v else str(v))
    return df


def _concat(pd, old, new):
    parts = [f for f in (old, new) if len(f.columns)]
    if not parts:
        return pd.DataFrame()
    return _uniform(pd.concat(parts, ignore_index=True)) if len(parts) > 1 else parts[0].reset_index(drop=True)


def _sorted(df, keys: list[str]):
    if set(keys) <= set(df.columns):
        df = df.sort_values(keys, kind="stable").reset_index(drop=True)
    return df


def _read_parquet(path: Path):
    """A parquet table, None if missing or unreadable."""
    import pandas as pd

    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - a corrupt table is rebuilt from the journal
        log.warning("%s is unreadable (%s); its rows are read from the journal", path, err)
        return None


def _write_parquet(df, path: Path) -> None:
    with atomic_write(path) as f:
        df.to_parquet(f, index=False)
