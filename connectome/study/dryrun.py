"""`connectome run --dry-run`: the trials a study would run, with params and multiply-adds; no training.

The record's `flops` column, here as everywhere in connectome, counts multiply-adds per image
(MACs), not floating-point operations (about twice as many); the tables say so in their header.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from connectome.console import make_console
from connectome.study.schema import GridSearch, Study
from connectome.study.trials import Trial, expand_grid

# Column header of the record's `flops`: millions of multiply-adds per image.
MACS_LABEL = "M MACs/image"


def print_plan(study: Study, console: Console | None = None) -> None:
    """Print a grid's trials, or an Optuna search's space and objectives."""
    console = console or make_console()
    console.print(f"study {study.name}: {study.description.strip()}")
    if isinstance(study.search, GridSearch):
        print_wide(console, grid_table(study))
    else:
        console.print(space_table(study))
        console.print(candidates_table(study))


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


def grid_table(study: Study) -> Table:
    """One row per trial: id, searched values, seed, params, multiply-adds (M MACs), and why it is rejected."""
    trials = expand_grid(study)
    keys = sorted({k for t in trials for k in t.assignment})
    matched = study.budget is not None  # growth chosen per candidate: show it
    table = Table(title=f"{len(trials)} trials ({sum(not t.rejected for t in trials)} to run), "
                        f"{study.train.epochs} epochs each on {study.data.name}")
    for col in ("trial", *keys, *(["growth"] if matched else []), "seed", "params", MACS_LABEL, "status"):
        table.add_column(col, justify="right" if col in ("params", MACS_LABEL, "seed") else "left")
    for t in trials:
        values = [str(t.assignment.get(k, "")) for k in keys] + ([str(t.config.arch.growth)] if matched else [])
        table.add_row(*_plain(t.trial_id, *values), str(t.config.seed), f"{t.params:,}", f"{t.flops / 1e6:,.1f}",
                      Text(f"rejected: {t.rejected}" if t.rejected else "run"))
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


def candidates_table(study: Study, n: int = 8) -> Table:
    """A few candidates drawn at random from the space, with their size and constraint check."""
    import optuna

    from connectome.errors import ConnectomeError
    from connectome.study.trials import make_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=study.search.sampler_seed))
    space = {key: spec.distribution() for key, spec in study.space.items()}
    table = Table(title=f"{n} random candidates (the sampler chooses the real ones as results arrive)")
    for col in ("trial", *space, "params", MACS_LABEL, "status"):
        table.add_column(col, justify="right" if col in ("params", MACS_LABEL) else "left")
    for _ in range(n):
        assignment = draw.ask(space).params
        try:
            t = make_trial(study, assignment, study.search.seed)
        except ConnectomeError as err:
            table.add_row("-", *_plain(*assignment.values()), "-", "-", Text(f"invalid: {err}"))
            continue
        table.add_row(*_plain(t.trial_id, *assignment.values()), f"{t.params:,}", f"{t.flops / 1e6:,.1f}",
                      Text(f"rejected: {t.rejected}" if t.rejected else "run"))
    return table


def plan_json(study: Study) -> dict[str, Any]:
    """The plan as data: a grid's trials, or an Optuna search's space and objectives (no trials yet)."""
    plan: dict[str, Any] = {"study": study.name, "description": study.description.strip(),
                            "search": study.search.kind, "epochs": study.train.epochs, "dataset": study.data.name}
    if isinstance(study.search, GridSearch):
        trials = expand_grid(study)
        plan["trials"] = [trial_json(t) for t in trials]
        plan["to_run"] = sum(not t.rejected for t in trials)
        rule = study.search.prescreen
        plan["prescreen"] = None if rule is None else rule.model_dump()  # to_run counts before the screen
    else:
        plan["n_trials"] = study.search.n_trials
        plan["sampler"] = study.search.sampler
        plan["objectives"] = [o.model_dump() for o in study.search.objectives]
        plan["space"] = {key: spec.model_dump(exclude_none=True) for key, spec in study.space.items()}
        plan["trials"] = []  # the sampler chooses them as results arrive
    return plan


def trial_json(trial: Trial) -> dict[str, Any]:
    """One planned trial: its plan (id, the arch built, size, hashes, execution), pattern, searched values, seed, status."""
    plan = trial.plan.to_json(hashes=not trial.rejected)  # a rejected network is never hashed (it may be huge)
    return {
        **plan, "pattern": trial.config.arch.pattern, "assignment": trial.assignment, "seed": trial.config.seed,
        "macs": plan["flops"], "status": "rejected" if trial.rejected else "run", "rejected": trial.rejected,
        "duplicate_of": trial.duplicate_of,
    }


def _plain(*values: object) -> list[Text]:
    """Table cells from user values: Text, so brackets in them are never parsed as markup."""
    return [Text(str(v)) for v in values]
