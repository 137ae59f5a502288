"""Studies: a validated study file expands into trials (planning only; connectome.orchestration runs them)."""
from connectome.study.schema import Study, load_study
from connectome.study.trials import Trial, expand_grid, make_trial, trial_id

__all__ = ["Study", "Trial", "expand_grid", "load_study", "make_trial", "run_study", "trial_id"]


def run_study(study: Study, **options):
    """Run a study with Ray Tune (see connectome.orchestration.driver.run_study); imports Ray lazily."""
    from connectome.orchestration.driver import run_study as run

    return run(study, **options)
