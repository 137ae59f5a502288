"""Running studies with Ray Tune: the driver, its workers, the Optuna searcher and storage, progress.

The study package plans (schema, trials, definition; no Ray); this package runs the plan. Ray
is imported only when a run starts, so planning, `--dry-run` and analysis never load it.
"""


def run_study(study, **options):
    """Run a study with Ray Tune (see connectome.orchestration.driver.run_study)."""
    from connectome.orchestration.driver import run_study as run

    return run(study, **options)


__all__ = ["run_study"]
