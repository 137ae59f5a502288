"""`connectome run --dry-run`: the trials a study would run, with params and multiply-adds; no training.

Trials that already have a final result (completed or diverged) in the study's results directory
are marked done, the rest to run, with an estimate of the time left (connectome/study/estimate.py).
The results directory is only read. The record's `flops` column, here as everywhere in
connectome, counts multiply-adds per image (MACs), not floating-point operations (about twice as
many); the tables say so in their header.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from connectome.console import make_console
from connectome.store import FINAL_STATUSES, StudyDir
from connectome.study.estimate import Estimate, estimate, estimate_by_count, sample, work_left
from connectome.study.schema import GridSearch, Study
from connectome.study.trials import Trial, expand_grid

# Column header of the record's `flops`: millions of multiply-adds per image.
MACS_LABEL = "M MACs/image"
# A language model's multiply-adds are per token (connectome/complexity.py), and its "epochs" evaluation intervals.
TEXT_LABELS = {"macs": "M MACs/token", "epochs": "evaluation intervals"}


def macs_label(study: Study) -> str:
    """The multiply-adds column: per image, or per token for text."""
    return TEXT_LABELS["macs"] if study.data.name == "text" else MACS_LABEL


def print_plan(study: Study, console: Console | None = None) -> None:
    """Print a grid's trials, or an Optuna search's space and objectives, then the time left."""
    console = console or make_console()
    console.print(f"study {study.name}: {study.description.strip()}")
    rows = recorded_rows(study)
    if isinstance(study.search, GridSearch):
        trials = expand_grid(study)
        print_wide(console, grid_table(study, trials, rows))
        left = sum(trial_status(t, rows.get(t.trial_id)) == "run" for t in trials)
        eta = grid_estimate(study, trials, rows)
    else:
        console.print(space_table(study))
        console.print(candidates_table(study))
        done = finished_rows(rows)
        console.print(f"{len(done)} of {study.search.n_trials} trials finished in {results_dir(study).root}")
        left, eta = max(study.search.n_trials - len(done), 0), search_estimate(study, rows)
    console.print(time_left_line(left, eta))


def time_left_line(left: int, eta: Estimate | None) -> str:
    """The estimate in words, or why there is none."""
    if not left:
        return "every trial has a result: nothing left to run"
    if eta is None:
        return f"time left for {left} trials: unknown until one has finished"
    return eta.describe()


def results_dir(study: Study) -> StudyDir:
    """Where the study's results are (or will be): <output>/<name>/."""
    return StudyDir(Path(study.output) / study.name)


def recorded_rows(study: Study) -> dict[str, dict[str, Any]]:
    """trial_id -> the latest recorded row in the study's results directory; {} before it has run. Read only."""
    return {trial_id: entry["row"] for trial_id, entry in results_dir(study).latest_entries().items()}


def finished_rows(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rows with a final status (completed or diverged): those trials never run again."""
    return {trial_id: row for trial_id, row in rows.items() if row.get("status") in FINAL_STATUSES}


def trial_status(trial: Trial, row: dict[str, Any] | None) -> str:
    """`rejected`, `done` (a final result is recorded) or `run` (no result, or a failed one: it runs again)."""
    if trial.rejected:
        return "rejected"
    return "done" if row is not None and row.get("status") in FINAL_STATUSES else "run"


def status_text(trial: Trial, row: dict[str, Any] | None) -> str:
    """The status cell: `done (completed)`, `done (diverged)`, `run`, `run (failed)`, `rejected: why`."""
    status = trial_status(trial, row)
    if status == "rejected":
        return f"rejected: {trial.rejected}"
    recorded = (row or {}).get("status")
    return f"{status} ({recorded})" if recorded else status


def grid_estimate(study: Study, trials: list[Trial], rows: dict[str, dict[str, Any]]) -> Estimate | None:
    """Time left for the grid's trials to run, at the pace of its finished ones when there are any."""
    left = [work_left(t.config, t.flops) for t in trials if trial_status(t, rows.get(t.trial_id)) == "run"]
    done = finished_rows(rows)
    finished = [sample(t.config, t.flops, done[t.trial_id]) for t in trials if t.trial_id in done]
    return estimate(left, [s for s in finished if s is not None], study.resources)


def search_estimate(study: Study, rows: dict[str, dict[str, Any]]) -> Estimate | None:
    """Time left for an Optuna search's trials still to come: its finished trials' mean time each."""
    done = finished_rows(rows)
    left = max(study.search.n_trials - len(done), 0)
    return estimate_by_count(left, [row.get("wall_time_s") for row in done.values()], study.resources)


def print_wide(console: Console, table: Table) -> None:
    """Print a table at its natural width, wider than the terminal if need be: ids stay whole."""
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update(max_width=10_000), table).maximum
    width = console.width
    console.width = max(width, natural)  # print() itself never exceeds the console's width
    try:
        console.print(table)
    finally:
        console.width = width


def grid_table(study: Study, trials: list[Trial], rows: dict[str, dict[str, Any]]) -> Table:
    """One row per trial: id, searched values, seed, params, multiply-adds (M MACs), done / to run / rejected."""
    keys = sorted({k for t in trials for k in t.assignment})
    matched = study.budget is not None  # growth chosen per candidate: show it
    statuses = [trial_status(t, rows.get(t.trial_id)) for t in trials]
    table = Table(title=f"{len(trials)} trials ({statuses.count('done')} done, {statuses.count('run')} to run), "
                        f"{study.train.epochs} {TEXT_LABELS['epochs'] if study.data.name == 'text' else 'epochs'} "
                        f"each on {study.data.name}")
    macs = macs_label(study)
    for col in ("trial", *keys, *(["growth"] if matched else []), "seed", "params", macs, "status"):
        table.add_column(col, justify="right" if col in ("params", macs, "seed") else "left")
    for t in trials:
        values = [str(t.assignment.get(k, "")) for k in keys] + ([str(t.config.arch.growth)] if matched else [])
        table.add_row(*_plain(t.trial_id, *values), str(t.config.seed), f"{t.params:,}", f"{t.flops / 1e6:,.1f}",
                      Text(status_text(t, rows.get(t.trial_id))))
    rule = study.search.prescreen
    if rule is not None:
        from connectome.study.prescreen import configuration_key

        configs = len({configuration_key(t) for t in trials if not t.rejected})
        table.caption = (f"prescreen: only the top {rule.keep:g} of these {configs} configurations by {rule.proxy} at "
                         f"initialisation will train (scored when the study runs: needs the data)")
    return table


def space_table(study: Study) -> Table:
    """The search space, sampler, objectives and trial count of an Optuna study."""
    search = study.search
    goals = ", ".join(f"{o.mode} {o.metric}" for o in search.objectives)
    table = Table(title=f"optuna {search.sampler}: {search.n_trials} trials, objectives: {goals}")
    table.add_column("parameter")
    table.add_column("values")
    for key, spec in study.space.items():
        values = spec.choices if spec.choices is not None else f"{spec.low} .. {spec.high}" + (" (log)" if spec.log else "")
        table.add_row(*_plain(key, values))
    limits = study.constraints
    if limits.max_params or limits.max_flops or study.budget:
        table.caption = f"constraints: {limits.model_dump(exclude_none=True)}; budget: {study.budget}"
    return table


def draw_candidates(study: Study, n: int = 8) -> list[tuple[dict[str, Any], Trial | str]]:
    """n candidates drawn at random from the space (conditions honoured): each planned, or why it is invalid."""
    import optuna

    from connectome.errors import ConnectomeError
    from connectome.study.space import ask_params
    from connectome.study.trials import make_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=study.search.sampler_seed))
    drawn: list[tuple[dict[str, Any], Trial | str]] = []
    for _ in range(n):
        assignment = ask_params(draw, study.space).params
        try:
            drawn.append((assignment, make_trial(study, assignment, study.search.seed)))
        except ConnectomeError as err:
            drawn.append((assignment, str(err)))
    return drawn


def candidates_table(study: Study, n: int = 8) -> Table:
    """A few candidates drawn at random from the space, with their size and constraint check."""
    keys = list(study.space)
    matched = study.budget is not None  # growth chosen per candidate: show it
    table = Table(title=f"{n} random candidates (the sampler chooses the real ones as results arrive)")
    macs = macs_label(study)
    for col in ("trial", *keys, *(["growth"] if matched else []), "params", macs, "status"):
        table.add_column(col, justify="right" if col in ("params", macs) else "left")
    for assignment, t in draw_candidates(study, n):
        values = [assignment.get(k, "") for k in keys]
        if isinstance(t, str):
            table.add_row("-", *_plain(*values), *(["-"] if matched else []), "-", "-", Text(f"invalid: {t}"))
            continue
        table.add_row(*_plain(t.trial_id, *values, *([t.config.arch.growth] if matched else [])), f"{t.params:,}",
                      f"{t.flops / 1e6:,.1f}", Text(f"rejected: {t.rejected}" if t.rejected else "run"))
    return table


def plan_json(study: Study) -> dict[str, Any]:
    """The plan as data: a grid's trials or an Optuna search's space (no trials yet), what is done, the time left."""
    rows = recorded_rows(study)
    plan: dict[str, Any] = {"study": study.name, "description": study.description.strip(),
                            "search": study.search.kind, "epochs": study.train.epochs, "dataset": study.data.name,
                            "results_dir": str(results_dir(study).root)}
    if isinstance(study.search, GridSearch):
        trials = expand_grid(study)
        plan["trials"] = [trial_json(t, rows.get(t.trial_id)) for t in trials]
        plan["done"] = sum(t["status"] == "done" for t in plan["trials"])
        plan["to_run"] = sum(t["status"] == "run" for t in plan["trials"])
        rule = study.search.prescreen
        plan["prescreen"] = None if rule is None else rule.model_dump()  # to_run counts before the screen
        eta = grid_estimate(study, trials, rows)
    else:
        plan["n_trials"] = study.search.n_trials
        plan["sampler"] = study.search.sampler
        plan["objectives"] = [o.model_dump() for o in study.search.objectives]
        plan["space"] = {key: spec.model_dump(exclude_none=True) for key, spec in study.space.items()}
        plan["trials"] = []  # the sampler chooses them as results arrive
        # a few random draws from the space, planned: what the candidates look like (budget, constraints)
        plan["candidates"] = [{"assignment": a, "invalid": t} if isinstance(t, str) else trial_json(t)
                              for a, t in draw_candidates(study)]
        plan["done"] = len(finished_rows(rows))
        plan["to_run"] = max(study.search.n_trials - plan["done"], 0)
        eta = search_estimate(study, rows)
    plan["estimate"] = None if eta is None else eta.to_json()
    return plan


def trial_json(trial: Trial, row: dict[str, Any] | None = None) -> dict[str, Any]:
    """One planned trial: its plan (id, the arch built, size, hashes, execution), pattern, searched values, seed,
    status (run, done or rejected) and the status of its recorded result (None before it has one)."""
    plan = trial.plan.to_json(hashes=not trial.rejected)  # a rejected network is never hashed (it may be huge)
    return {
        **plan, "pattern": trial.config.arch.pattern, "assignment": trial.assignment, "seed": trial.config.seed,
        "macs": plan["flops"], "status": trial_status(trial, row), "result": (row or {}).get("status"),
        "rejected": trial.rejected, "duplicate_of": trial.duplicate_of,
    }


def _plain(*values: object) -> list[Text]:
    """Table cells from user values: Text, so brackets in them are never parsed as markup."""
    return [Text(str(v)) for v in values]
