"""Run a study with Ray Tune: one driver per results directory, every result recorded once.

The driver checks what can fail before anything runs (cluster reachable, resources possible,
the results directory's layout and study definition), takes the directory's lock, plans the
trials, and runs the ones without a final result (completed or diverged; failed trials run
again and continue from their checkpoints). Workers report each trial's result through Ray;
the driver appends it to the journal (connectome/store/layout.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from connectome.console import make_console
from connectome.errors import ConfigError, ConnectomeError, Interrupted
from connectome.orchestration.interrupts import Interrupts
from connectome.orchestration.recorder import make_recorder, trial_name
from connectome.orchestration.resources import resolve_resources
from connectome.orchestration.session import (
    check_local_resources,
    check_reachable,
    check_shared_results,
    cluster_address,
    ray_session,
    stop_orphans,
)
from connectome.orchestration.tracking import check_tracking, make_tracking_callbacks
from connectome.orchestration.waves import (
    concurrency,
    grid_waves,
    prune_earlier_runs,
    prune_tune_run,
    search_waves,
    wave_size,
)
from connectome.orchestration.worker import check_worker_dir, train_in_worker
from connectome.store.labels import label_from_trial_file
from connectome.files import refuse_link
from connectome.store.layout import LAYOUT_VERSION, StudyDir, read_json, write_json, write_trial_config
from connectome.store.lock import DriverLock, describe
from connectome.study.definition import compare, fingerprint
from connectome.orchestration.progress import StudyView, summary_table
from connectome.study.schema import GridSearch, Study
from connectome.study.trials import Trial, expand_grid
from connectome.testing.faults import fault

OnChange = Literal["error", "beside"]


def run_study(
    study: Study,
    *,
    address: str | None = None,
    resume: bool = False,
    restart: bool = False,
    on_change: OnChange = "error",
    dashboard: bool = False,
    console: Console | None = None,
    report: bool = True,
):
    """Run every trial of the study without a final result; returns the trials DataFrame."""
    console = console or make_console()
    # first of all: a killed driver's workers may still be writing into this directory
    stop_dead_drivers_ray(StudyDir(Path(study.output) / study.name), console)
    address = preflight(study, address)
    sd = choose_dir(study, StudyDir(Path(study.output) / study.name), resume, restart, on_change, console)
    trials, screened, duplicates = plan_grid(study, console) if isinstance(study.search, GridSearch) \
        else (None, None, {})
    with DriverLock(sd.lock_file) as lock:
        if lock.previous:
            console.print(f"took over the lock of a dead driver ({describe(lock.previous)}: "
                          f"{lock.previous['taken_over_because']})", highlight=False, markup=False)
        clean_up_after_dead_driver(sd, console)
        if restart:
            move_aside(sd, console)
        for journal in (sd.journal, sd.optuna_journal):  # before anything is appended to them
            refuse_link(journal)
        changes = check_definition(study, sd)
        if screened is not None:
            write_prescreen(sd, screened)
        try:
            run_trials(study, sd, trials, changes, address, dashboard, console, duplicates, lock)
        except (KeyboardInterrupt, Interrupted) as err:
            lock.check()  # interrupted because another driver took the lock over: say so
            sd.compact_or_warn()
            raise interrupted(err, trials, study, sd) from None
        lock.check()
        # a killed driver's last Tune run, and earlier drivers' last runs, once their trials are recorded
        prune_earlier_runs(sd.tune_dir, sd.statuses())
        sd.compact_or_warn()
    frame = own_rows(sd.frames()[0], study_ids(study, sd, trials), sd, console)
    show_summary(study, frame, console)
    if report:
        write_report(sd, console)
    return frame


# ---------------------------------------------------------------- checks before anything is written


def preflight(study: Study, address: str | None) -> str | None:
    """Checks that can fail before training: the cluster is reachable, resources can exist, precision, trackers."""
    address = cluster_address(address)
    if address:
        check_reachable(address)
    else:
        cpu = study.resources.cpu
        check_local_resources(1.0 if cpu == "auto" else cpu, study.resources.gpu)
        check_worker_dir()  # the local workers inherit it
    if study.train.precision == "fp16" and (study.resources.gpu == 0 or study.train.device == "cpu"):
        raise ConfigError(f"{study.source}: train.precision fp16 needs a GPU (resources.gpu > 0); "
                          "on CPU use bf16 or fp32")
    check_tracking(study)
    return address


def choose_dir(study: Study, sd: StudyDir, resume: bool, restart: bool, on_change: OnChange,
               console: Console) -> StudyDir:
    """The results directory to use: the study's own, or (on_change=beside) one beside it."""
    if restart or not has_trials(sd):
        return sd
    if not resume:
        raise ConfigError(f"{sd.root} already holds trials of study {study.name!r}; pass --resume to continue "
                          "it, --restart to move them aside and start over, or --set name=NEW for a new study")
    try:
        check_definition(study, sd)
        return sd
    except DefinitionChanged as err:
        if on_change != "beside":
            raise
        beside = StudyDir(sd.root.with_name(f"{sd.root.name}-{fingerprint(resolved(study))[:8]}"))
        console.print(f"{sd.root} holds {err.what}; running this definition beside it in {beside.root}",
                      highlight=False, markup=False)
        if has_trials(beside):
            check_definition(study, beside)
        return beside


def check_fingerprint(study: Study, sd: StudyDir, stamp: dict[str, Any]) -> None:
    """Without study.resolved.json only the definition layout.json's fingerprint names may resume."""
    if stamp.get("fingerprint") == fingerprint(resolved(study)):
        return
    raise DefinitionChanged(
        f"{sd.resolved_file} is missing or unreadable and this definition of study {study.name!r} is not the "
        f"one {sd.layout_file} names (its fingerprint differs), so whether it only grows the plan cannot be "
        f"checked; restore that file, resume with the stored definition ({sd.study_file}), or use "
        "--set name=NEW for a new study or --restart to move the old results aside",
        "a definition that cannot be checked (study.resolved.json is gone)")


def interrupted(err: BaseException, trials: list[Trial] | None, study: Study, sd: StudyDir) -> Interrupted:
    """The interruption (a signal, or a lost Ray), saying how many planned trials have no final result yet."""
    import signal

    # Interrupted, SignalInterrupt, or a plain Ctrl-C
    stop = err if isinstance(err, Interrupted) else Interrupted(getattr(err, "signum", signal.SIGINT))
    planned = len(trials) if trials is not None else study.search.n_trials
    done = sd.final_ids() & study_ids(study, sd, trials)
    left = max(planned - len(done), 0)
    return stop.with_detail(f"{left} of {planned} trials of study {study.name!r} have no result yet "
                            f"(finished ones are kept in {sd.root})")


class DefinitionChanged(ConfigError):
    """The results directory holds another layout or another study definition."""

    def __init__(self, message: str, what: str):
        super().__init__(message)
        self.what = what


def has_trials(sd: StudyDir) -> bool:
    return sd.journal.exists() or (sd.trials.is_dir() and any(sd.trials.iterdir()))


def resolved(study: Study) -> dict[str, Any]:
    return study.model_dump(mode="json")


def check_definition(study: Study, sd: StudyDir):
    """The accepted changes (plan growth) from the stored definition; raise on any other change."""
    if not has_trials(sd):
        return None
    stamp = sd.layout() or {}
    if stamp.get("layout") != LAYOUT_VERSION:
        raise DefinitionChanged(
            f"{sd.root} was written by another version of connectome (results layout {stamp.get('layout')}, "
            f"this one writes {LAYOUT_VERSION}); use --restart to move it aside and start over, or "
            "--set name=NEW to run beside it", f"results of layout {stamp.get('layout')}")
    stored = read_json(sd.resolved_file)
    if not isinstance(stored, dict):
        check_fingerprint(study, sd, stamp)
        return None
    changes = compare(stored, resolved(study))
    if changes.conflicts:
        raise DefinitionChanged(
            f"{sd.root} holds another definition of study {study.name!r}: {'; '.join(changes.conflicts)}. "
            "Only growing the plan (seeds, factor levels, variants, n_trials) and resources may change on "
            "--resume; use --set name=NEW for a new study, or --restart to move the old results aside",
            "another definition of the study")
    return changes


def move_aside(sd: StudyDir, console: Console) -> None:
    """--restart: move the directory's contents (not our lock) to <dir>.old-TIME."""
    if not sd.root.is_dir():
        return
    target = sd.root.with_name(f"{sd.root.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    target.mkdir()
    for entry in sd.root.iterdir():
        if entry.name != sd.lock_file.name:
            shutil.move(str(entry), target / entry.name)
    console.print(f"--restart: moved the old results to {target}", highlight=False, markup=False)


def stop_dead_drivers_ray(sd: StudyDir, console: Console) -> None:
    """Stop the local Ray processes a killed driver of this directory left running (session.stop_orphans)."""
    killed = stop_orphans(sd)
    if killed:
        console.print(f"stopped {len(killed)} Ray processes left by a killed driver", highlight=False)


def clean_up_after_dead_driver(sd: StudyDir, console: Console) -> None:
    """Stop a killed driver's local Ray (again: `sd` may be a directory beside the study's), remove its temp files."""
    stop_dead_drivers_ray(sd, console)
    from connectome.files import remove_stale_temps

    remove_stale_temps(sd.root, recursive=True)  # study files, and every trial's records and checkpoints


# ---------------------------------------------------------------- planning and running


def plan_grid(study: Study, console: Console) -> tuple[list[Trial], Any, dict[str, str]]:
    """Expand the grid, pre-screen it if asked, report rejected candidates.

    Returns the accepted trials, the screen's table and the duplicates skipped (id -> original).
    """
    trials = expand_grid(study)
    for trial in trials:
        if trial.rejected:
            console.print(f"rejected {trial.trial_id} {trial.assignment} seed {trial.config.seed}: {trial.rejected}",
                          highlight=False, markup=False)
    duplicates = {t.trial_id: t.duplicate_of for t in trials if t.duplicate_of}
    trials, screened = prescreen_grid(study, trials, console)
    return [t for t in trials if not t.rejected], screened, duplicates


def prescreen_grid(study: Study, trials: list[Trial], console: Console) -> tuple[list[Trial], Any]:
    """The trials with those the proxy ranks low skipped (study/prescreen.py), and the table of every candidate."""
    rule = study.search.prescreen
    if rule is None:
        return trials, None
    from connectome.study.prescreen import screen

    console.print(f"prescreen: scoring {sum(not t.rejected for t in trials)} trials by {rule.proxy} at initialisation",
                  highlight=False, markup=False)
    trials, table = screen(trials, rule.proxy, rule.keep)
    if len(table):
        skipped = table[table["status"] == "skipped"]
        listing = StudyDir(Path(study.output) / study.name).prescreen_file.name
        console.print(f"prescreen: {table['configuration'].nunique() - skipped['configuration'].nunique()} of "
                      f"{table['configuration'].nunique()} configurations kept (top {rule.keep:g} by {rule.proxy}); "
                      f"{len(skipped)} trials skipped, listed in {listing}",
                      highlight=False, markup=False)
    return trials, table


def write_prescreen(sd: StudyDir, table) -> None:
    """prescreen.csv: every candidate with its proxy value, its configuration's score and rank, kept or skipped."""
    from connectome.files import write_atomic

    sd.root.mkdir(parents=True, exist_ok=True)
    write_atomic(sd.prescreen_file, table.to_csv(index=False).encode())


def run_trials(study: Study, sd: StudyDir, trials: list[Trial] | None, changes, address: str | None,
               dashboard: bool, console: Console, duplicates: dict[str, str] | None = None,
               lock: DriverLock | None = None) -> None:
    """Start Ray only if something is left to run; write the study's files once it is connected."""
    if trials is not None:
        final = sd.final_ids()
        pending = [t for t in trials if t.trial_id not in final]
        total, to_run = len(trials), len(pending)
    else:
        from connectome.store.optuna_storage import count_finished, requeue_failed

        requeue_failed(sd, study.name, study.search.storage)
        pending, total = [], study.search.n_trials
        to_run = max(total - count_finished(sd, study.name, study.search.storage), 0)
    console.print(f"study {study.name}: {total} trials, {total - to_run} finished, {to_run} to run; "
                  f"results in {sd.root}", highlight=False, markup=False)
    if not to_run:
        write_study_files(study, sd, changes)
        return
    faults = os.environ.get("CONNECTOME_FAULTS")
    env = {"CONNECTOME_FAULTS": faults, "CONNECTOME_DRIVER_PID": str(os.getpid())} if faults else {}
    # Interrupts first: a signal while Ray starts waits for it, so that the Ray it started is shut down
    with Interrupts() as interrupts, \
            ray_session(address, dashboard, console, sd=None if address else sd, env=env, interrupts=interrupts):
        if address:
            check_shared_results(sd)
        write_study_files(study, sd, changes)
        for trial in pending:
            write_trial_config(sd.trial(trial.trial_id), trial.config.model_dump(mode="json"), study=study.name,
                               assignment=trial.assignment, planned=trial.plan.to_json())
        if trials is not None:
            sd.write_plan([t.trial_id for t in trials], duplicates)
        describe = lambda trial_id: label_from_trial_file(sd.trial(trial_id).config)  # noqa: E731
        concrete, chosen = resolve_resources(study, to_run, address)
        if chosen:
            console.print(chosen, highlight=False, markup=False)
        with StudyView(console, study.name, total, total - to_run, describe=describe) as view:
            run_waves(concrete, sd, pending, view, lock, interrupts)


def write_study_files(study: Study, sd: StudyDir, changes) -> None:
    """study.yaml, study.resolved.json and the layout stamp (with the history of plan growth)."""
    from connectome.files import write_atomic

    sd.root.mkdir(parents=True, exist_ok=True)
    if study.source and Path(study.source).is_file():
        write_atomic(sd.study_file, Path(study.source).read_bytes())
    write_json(sd.resolved_file, resolved(study))
    stamp = sd.layout() if sd.layout_file.exists() else None
    history = list((stamp or {}).get("extensions", []))
    if changes is not None and changes.growth:
        history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changes": changes.growth})
    sd.stamp(study=study.name, fingerprint=fingerprint(resolved(study)),
             created=(stamp or {}).get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")), extensions=history)


def run_waves(study: Study, sd: StudyDir, pending: list[Trial], view: StudyView,
              lock: DriverLock | None = None, interrupts: Interrupts | None = None) -> None:
    """One Tune run per wave of at most K trials, on the warm Ray session (orchestration/waves.py)."""
    import ray

    size = wave_size(study.resources, concurrency(study.resources, ray.cluster_resources()))
    if isinstance(study.search, GridSearch):
        runs = ((wave, len(wave)) for wave in grid_waves(pending, size))
    else:
        from connectome.store.optuna_storage import count_finished

        def left() -> int:
            return study.search.n_trials - count_finished(sd, study.name, study.search.storage)

        runs = (([], n) for n in search_waves(left, size))
    name, previous = f"tune-{time.strftime('%Y%m%d-%H%M%S')}", None
    for i, (wave, n) in enumerate(runs):
        if previous:
            fault("wave")
            prune_tune_run(sd.tune_dir / previous)
        previous = name if i == 0 else f"{name}-{i + 1}"
        for guard in (lock, interrupts):  # a lost lock or a signal: no further Tune run
            if guard is not None:
                guard.check()
        with interrupts.tune_run() if interrupts is not None else contextlib.nullcontext():
            fit(make_tuner(study, sd, wave, n, view, name=previous))
    if interrupts is not None:
        interrupts.check()


def fit(tuner) -> None:
    """tuner.fit(), with a user error raised inside Tune (e.g. by the searcher) or an interruption re-raised as itself."""
    try:
        tuner.fit()
    except Exception as err:  # noqa: BLE001 - Tune wraps what its searcher raises
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, (ConnectomeError, Interrupted)):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def tag_own_callbacks_without_integrations() -> None:
    """Spare each Tune run the import of Tune's mlflow, wandb and comet integrations.

    Tune's telemetry (ray.air._internal.usage.tag_callbacks) imports those integrations only to read
    their class names, and with them mlflow where it is installed (the tracking extra): about 2 s of
    CPU per driver. Callbacks of connectome's own are tagged as Tune tags any custom one; a list
    holding one of Tune's integration callbacks goes to Tune's function unchanged. Nothing is
    changed where Tune's internals are not as expected.
    """
    try:
        from ray.air._internal import usage
        from ray.tune.logger import LoggerCallback
    except ImportError:
        return
    original = getattr(usage, "tag_callbacks", None)
    if original is None or getattr(original, "connectome", False) or not hasattr(usage, "record_extra_usage_tag"):
        return

    def tag_callbacks(callbacks) -> bool:
        if any(k.__module__.startswith("ray.air.integrations") for c in callbacks or () for k in type(c).__mro__):
            return original(callbacks)  # a tracking callback: its integration is imported already
        if not callbacks:
            return False
        counts = Counter("CustomLoggerCallback" if isinstance(c, LoggerCallback) else "CustomCallback"
                         for c in callbacks)
        usage.record_extra_usage_tag(usage.TagKey.AIR_CALLBACKS, json.dumps(counts))
        return True

    tag_callbacks.connectome = True
    usage.tag_callbacks = tag_callbacks


def make_tuner(study: Study, sd: StudyDir, pending: list[Trial], to_run: int, view: StudyView,
               name: str | None = None):
    """A Tuner over the pending grid trials, or over an Optuna searcher's suggestions."""
    from ray import tune

    tag_own_callbacks_without_integrations()

    from connectome.orchestration.scheduler import make_scheduler
    from connectome.orchestration.search import make_searcher

    # Only small constants go through with_parameters: Tune keeps what it is given there in the
    # object store for the driver's life (its registry is never released), once per Tune run.
    trainable = tune.with_parameters(
        train_in_worker, root=str(sd.root.resolve()), study_name=study.name, retries=study.retries,
        plugins=list(study.plugins),
    )
    trainable = tune.with_resources(trainable, {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    grid = isinstance(study.search, GridSearch)
    tune_config = tune.TuneConfig(
        search_alg=None if grid else make_searcher(study, sd),
        scheduler=make_scheduler(study),
        num_samples=1 if grid else to_run,
        max_concurrent_trials=study.resources.max_concurrent,
        trial_name_creator=trial_name,
        trial_dirname_creator=trial_name,
        # A worker keeps torch imported between trials instead of starting a new process each.
        reuse_actors=True,
    )
    run_config = tune.RunConfig(
        name=name or f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
        storage_path=str(sd.tune_dir.resolve()),
        verbose=0,
        callbacks=[make_recorder(sd, study.name, view), *make_tracking_callbacks(study, sd)],
        failure_config=tune.FailureConfig(max_failures=study.retries),
        checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
    )
    space = grid_space(pending) if grid else None
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


def grid_space(pending: list[Trial]) -> dict[str, Any]:
    """Tune's param_space for grid trials: one Tune trial per id, carrying its own config (freed with the run)."""
    from ray import tune

    configs = {t.trial_id: t.config.model_dump_json() for t in pending}
    # Tune calls the function with the trial's config (a function of the whole spec is deprecated and logs a warning per trial)
    return {"trial_id": tune.grid_search(list(configs)),
            "trial_config": tune.sample_from(lambda config: configs[config["trial_id"]])}


# ---------------------------------------------------------------- the end of a run


def show_summary(study: Study, frame, console: Console) -> None:
    """The answer in words, the summary table (one row per pattern and searched factor, over seeds), every failure."""
    from connectome.analysis.units import headline_metric, points_name, with_points

    keys = ["pattern"]
    if isinstance(study.search, GridSearch):
        # each key once, in order of appearance (a key may appear in several variants)
        keys = list(dict.fromkeys([*keys, *study.search.factors, *(k for v in study.search.variants for k in v)]))
    for line in study_answer_lines(study, frame):
        console.print(line, highlight=False, markup=False)
    metric = points_name(headline_metric(frame))
    unit = "bits per byte" if metric == "test_bpb" else "test error in percentage points"
    console.print(summary_table(with_points(frame), keys, metric=metric,
                                title=f"{study.name}: {unit} over seeds (lower is better)"))
    if "status" not in frame:
        return
    for _, row in frame[frame["status"] == "failed"].iterrows():
        error = str(row.get("error") or "no error text").strip().splitlines()
        console.print(f"failed: {row['trial_id']} (seed {row.get('seed')}): {error[-1] if error else ''}",
                      highlight=False, markup=False)


def study_answer_lines(study: Study, frame) -> list[str]:
    """The study's answer (connectome/analysis/answer.py), one line per comparison; none before any result."""
    from connectome.analysis.answer import study_answer

    if frame is None or len(frame) == 0:
        return []
    search = "grid" if isinstance(study.search, GridSearch) else "optuna"
    budget = study.budget.params if study.budget is not None else None
    return [sentence.text for sentence in study_answer(frame, search=search, budget=budget)]


def study_ids(study: Study, sd: StudyDir, trials: list[Trial] | None) -> set[str]:
    """The trial ids this study planned: the grid's, or those of its Optuna search."""
    if trials is not None:
        return {t.trial_id for t in trials}
    from connectome.store.optuna_storage import study_trial_ids

    return study_trial_ids(sd, study.name, study.search.storage)


def own_rows(frame, planned: set[str], sd: StudyDir, console: Console):
    """The rows of planned trials; journal rows of any other trial (written elsewhere) are ignored with a warning."""
    if "trial_id" not in frame:
        return frame
    foreign = sorted(set(frame["trial_id"]) - planned)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        console.print(f"warning: {sd.journal} holds {len(foreign)} trials this study did not plan "
                      f"({', '.join(foreign[:3])}{more}); they were written by something else and are ignored",
                      highlight=False, markup=False)
    return frame[frame["trial_id"].isin(planned)].reset_index(drop=True)


def failed_count(frame) -> int:
    """Trials whose latest result is `failed`."""
    return int((frame["status"] == "failed").sum()) if "status" in frame else 0


def write_report(sd: StudyDir, console: Console) -> None:
    """connectome.analysis.write_report(results_dir); a failure here never touches the results."""
    from connectome.analysis import write_report as report

    try:
        path = report(sd.root)
    except Exception as err:  # noqa: BLE001 - the study's results are safe; the report is extra
        console.print(f"report: failed ({type(err).__name__}: {err}); results are in {sd.root}",
                      highlight=False, markup=False)
        return
    console.print(f"report: {path or sd.root}", highlight=False, markup=False)
