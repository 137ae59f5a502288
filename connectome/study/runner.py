"""Run a study with Ray Tune: plan trials, train them in Ray workers, keep every result on disk.

The worker that trains a trial also writes its result.json, so a dead driver loses nothing;
the driver rebuilds trials.parquet from the trial dirs after each trial. Resuming skips
trials with a result.json and re-runs the others, which continue from their checkpoints.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console

from connectome.errors import ConfigError
from connectome.study.progress import StudyView, summary_table
from connectome.study.results import StudyDir, collect, make_row, write_atomic, write_json, write_result
from connectome.study.schema import OBJECTIVE_METRICS, GridSearch, Study
from connectome.study.trials import Trial, expand_grid


def run_study(
    study: Study,
    *,
    address: str | None = None,
    resume: bool = False,
    dashboard: bool = False,
    console: Console | None = None,
    report: bool = True,
):
    """Run every trial of the study not finished yet; returns the trials DataFrame."""
    console = console or Console()
    sd = StudyDir(Path(study.output) / study.name)
    prepare_dir(study, sd, resume)
    if isinstance(study.search, GridSearch):
        trials = plan_grid(study, sd, console)
        pending = [t for t in trials if t.trial_id not in sd.finished_ids()]
        total, to_run = len(trials), len(pending)
    else:
        from connectome.study.storage import count_finished

        total = study.search.n_trials
        to_run = max(total - count_finished(sd, study.name), 0)
        pending = []
    console.print(f"study [bold]{study.name}[/]: {total} trials, {total - to_run} finished, "
                  f"{to_run} to run; results in {sd.root}", highlight=False)
    if to_run:
        with ray_session(address, dashboard, console), StudyView(console, study.name, total, total - to_run) as view:
            tuner = make_tuner(study, sd, pending, to_run, view)
            fit(tuner)
    frame = collect(sd)
    show_summary(study, frame, console)
    if report:
        write_report(sd, console)
    return frame


def fit(tuner) -> None:
    """tuner.fit(), with a user error raised inside Tune (e.g. by the searcher) re-raised as itself."""
    from connectome.errors import ConnectomeError

    try:
        tuner.fit()
    except Exception as err:  # noqa: BLE001 - Tune wraps what its searcher raises
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, ConnectomeError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def prepare_dir(study: Study, sd: StudyDir, resume: bool) -> None:
    """Create results/<study>/ with a copy of the study file; refuse to mix runs without --resume."""
    started = sd.trials.is_dir() and any(sd.trials.iterdir())
    if started and not resume:
        raise ConfigError(
            f"{sd.root} already holds trials of study {study.name!r}; pass --resume to continue it,"
            " or remove the directory (or change `name`/`output`) to start over"
        )
    sd.root.mkdir(parents=True, exist_ok=True)
    if study.source:
        write_atomic(sd.root / "study.yaml", Path(study.source).read_bytes())
    write_json(sd.root / "study.resolved.json", study.model_dump(mode="json"))


def plan_grid(study: Study, sd: StudyDir, console: Console) -> list[Trial]:
    """Expand the grid, report rejected candidates, write each trial's config before any runs."""
    trials = expand_grid(study)
    for trial in trials:
        if trial.rejected:
            console.print(f"rejected {trial.trial_id} {trial.assignment} seed {trial.config.seed}: {trial.rejected}",
                          highlight=False)
    accepted = [t for t in trials if not t.rejected]
    for trial in accepted:
        write_trial_file(sd, study.name, trial)
    return accepted


def write_trial_file(sd: StudyDir, study_name: str, trial: Trial) -> None:
    """The trial's resolved config and the search values that produced it."""
    path = sd.config_file(trial.trial_id)
    if not path.exists():
        write_json(path, {
            "trial_id": trial.trial_id, "study": study_name, "assignment": trial.assignment,
            "config": trial.config.model_dump(mode="json"),
        })


@contextmanager
def ray_session(address: str | None, dashboard: bool, console: Console) -> Iterator[None]:
    """Connect to a cluster (--address / RAY_ADDRESS) or start a private local Ray on 127.0.0.1."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address.startswith("http"):
        raise ConfigError(f"--address {address} is a dashboard (Jobs API) address; "
                          "use `connectome submit` for it, or give the GCS address (HOST:6379)")
    if not address or is_loopback(address):
        # A single-machine Ray: Ray otherwise replaces 127.0.0.1 by the node's public address and
        # listens on all interfaces. Read when ray is first imported, so set before the import.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Tune's own console output would interleave with ours; verbose=0 silences the classic one.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    # Ray warns on every start that token authentication is on; that is the secure default.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    options: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING)
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1",
                 _node_ip_address="127.0.0.1", **options)
    console.print(f"ray: {'cluster ' + address if address else 'local'}, "
                  f"{ray.cluster_resources().get('CPU', 0):g} CPUs", highlight=False)
    try:
        yield
    finally:
        ray.shutdown()


def is_loopback(address: str) -> bool:
    """True for addresses on this machine's loopback interface (127.0.0.1:6379, localhost:...)."""
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1", "[::1]")


def make_tuner(study: Study, sd: StudyDir, pending: list[Trial], to_run: int, view: StudyView):
    """A Tuner over the pending grid trials, or over an Optuna searcher's suggestions."""
    from ray import tune

    from connectome.study.search import make_searcher

    configs = {t.trial_id: t.config.model_dump_json() for t in pending}
    trainable = tune.with_parameters(
        train_in_worker, root=str(sd.root.resolve()), study_name=study.name, retries=study.retries,
        configs=configs,
    )
    trainable = tune.with_resources(trainable, {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    grid = isinstance(study.search, GridSearch)
    tune_config = tune.TuneConfig(
        search_alg=None if grid else make_searcher(study, sd),
        num_samples=1 if grid else to_run,
        max_concurrent_trials=study.resources.max_concurrent,
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
        # A worker keeps torch imported between trials instead of starting a new process each.
        reuse_actors=True,
    )
    run_config = tune.RunConfig(
        name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
        storage_path=str((sd.root / "ray").resolve()),
        verbose=0,
        callbacks=[make_recorder(sd, study.name, view)],
        failure_config=tune.FailureConfig(max_failures=study.retries),
        checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
    )
    space = {"trial_id": tune.grid_search(list(configs))} if grid else None
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


def _trial_name(trial) -> str:
    """Tune's name for a trial: ours."""
    return str(trial.config.get("trial_id", trial.trial_id))


def train_in_worker(config: dict, *, root: str, study_name: str, retries: int, configs: dict[str, str]) -> None:
    """Ray Tune trainable: train (or resume) one trial, write its result, report its metrics."""
    from ray import tune

    from connectome.training import TrialConfig

    trial_id = config["trial_id"]
    trial_config = TrialConfig.model_validate_json(config.get("trial_config") or configs[trial_id])
    sd = StudyDir(root)
    if not sd.result_file(trial_id).exists():  # else: an Optuna repeat of a finished trial
        epochs_total = trial_config.train.epochs

        def on_epoch(epoch: dict[str, Any]) -> None:
            tune.report(epoch_metrics(epoch, epochs_total))

        record = attempt_trial(trial_config, sd.trial(trial_id), retries, on_epoch)
        write_result(sd, trial_id, make_row(study_name, trial_id, trial_config, record), record.get("epochs") or [])
    row = json.loads(sd.result_file(trial_id).read_text())["row"]
    tune.report(final_metrics(row))


def attempt_trial(config, trial_dir: Path, retries: int, on_epoch) -> dict[str, Any]:
    """train_trial with up to `retries` more attempts after a failure (each resumes its checkpoint)."""
    from connectome.training import train_trial

    for attempt in range(retries + 1):
        try:
            record = dict(train_trial(config, trial_dir=trial_dir, on_epoch=on_epoch))
        except Exception as err:  # noqa: BLE001 - a trial's failure is a result, not a crash
            record = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        record["attempts"] = attempt + 1
        if record.get("status") != "failed":
            break
    return record


def epoch_metrics(epoch: dict[str, Any], epochs_total: int) -> dict[str, Any]:
    """What Tune, a scheduler and a searcher see after an epoch: validation and training only.

    An epoch row may hold test metrics (train.test_each_epoch); they go to the results files,
    never here, so nothing is ever selected or stopped on test data.
    """
    # Tune wants the searcher's metrics in every result: NaN until the trial ends.
    return {**final_metrics({}), "epoch": epoch.get("epoch"), "epochs": epochs_total,
            "val_acc": epoch.get("val_acc"), "train_loss": epoch.get("train_loss")}


def final_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """The metrics Tune (and an Optuna searcher) see at the end of a trial; NaN when missing."""
    out: dict[str, Any] = {"status": row.get("status")} if row else {}
    for key in OBJECTIVE_METRICS:
        value = row.get(key)
        out[key] = float(value) if isinstance(value, (int, float)) and value is not None else math.nan
    return out


def failure_row(sd: StudyDir, study_name: str, trial_id: str, error: str) -> None:
    """Record a trial whose worker died (the worker could not write its own result)."""
    from connectome.training import TrialConfig

    if sd.result_file(trial_id).exists() or not sd.config_file(trial_id).exists():
        return
    config = TrialConfig.model_validate(json.loads(sd.config_file(trial_id).read_text())["config"])
    write_result(sd, trial_id, make_row(study_name, trial_id, config, {"status": "failed", "error": error}), [])


def make_recorder(sd: StudyDir, study_name: str, view: StudyView):
    """The driver-side Tune callback (defined here: ray is imported only once a session starts)."""
    from ray import tune

    class Recorder(tune.Callback):
        """Driver-side Tune callback: progress lines, failure rows, parquet rebuilt per finished trial."""

        def __init__(self, sd: StudyDir, study_name: str, view: StudyView):
            self.sd, self.study_name, self.view = sd, study_name, view

        def __getstate__(self) -> dict:
            # Tune pickles its callbacks with the experiment state; the live display stays here.
            return {"sd": self.sd, "study_name": self.study_name, "view": None}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.view.started(_trial_name(trial))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "status" not in result:  # per-epoch reports; the final one carries the status
                self.view.epoch(_trial_name(trial), result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._finished(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            error = trial.get_error()
            text = str(error).strip().splitlines()[-1] if error else "worker died"
            failure_row(self.sd, self.study_name, _trial_name(trial), f"worker error: {text}")
            self._finished(trial)

        def _finished(self, trial) -> None:
            trial_id = _trial_name(trial)
            collect(self.sd)
            path = self.sd.result_file(trial_id)
            self.view.finished(trial_id, json.loads(path.read_text())["row"] if path.exists() else None)

    return Recorder(sd, study_name, view)


def show_summary(study: Study, frame, console: Console) -> None:
    """The summary table: one row per pattern and searched factor, over seeds."""
    keys = ["pattern"]
    if isinstance(study.search, GridSearch):
        keys += [k for k in study.search.factors if k != "pattern"]
        keys += [k for v in study.search.variants for k in v if k not in keys]
    console.print(summary_table(frame, keys, title=f"{study.name}: test accuracy over seeds"))


def write_report(sd: StudyDir, console: Console) -> None:
    """connectome.analysis.write_report(results_dir) when the analysis package provides it."""
    try:
        from connectome.analysis import write_report as report
    except ImportError:
        console.print("report: connectome.analysis.write_report is not available; skipped")
        return
    try:
        path = report(sd.root)
    except Exception as err:  # noqa: BLE001 - the study's results are safe; the report is extra
        console.print(f"report: failed ({type(err).__name__}: {err}); results are in {sd.root}")
        return
    console.print(f"report: {path or sd.root}")
