"""Studies: a validated study file expands into trials (planning only; connectome.orchestration.driver runs them)."""
from connectome.study.schema import Study, load_study
from connectome.study.trials import Trial, expand_grid, make_trial, trial_id

__all__ = ["Study", "Trial", "expand_grid", "load_study", "make_trial", "trial_id"]
