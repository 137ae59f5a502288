"""One owner for the trial record and the results directory: columns, statuses, files, journal, lock.

`record` says what a trial's flat row holds (column groups, statuses, factors, the trial id's
config hash); `layout` says where every file of a results directory lives and how it is read
and written (the one place that names its files); `lock` keeps one driver per results directory;
`labels` names a trial for people (pattern, factors, seed); `optuna_storage` opens a study's
Optuna storage (imported on its own: it loads Optuna). Nothing here imports torch or Ray.
"""
from connectome.store.labels import label_from_trial_file, trial_label
from connectome.store.layout import LAYOUT_VERSION, StudyDir, TrialFiles, read_trial_result, write_trial_result
from connectome.store.record import (
    FINAL_STATUSES,
    RESOURCE_KEYS,
    STATUSES,
    config_columns,
    config_hash,
    factor_columns,
    flatten,
    is_factor,
    order_columns,
    semantic_config,
)

__all__ = [
    "FINAL_STATUSES", "LAYOUT_VERSION", "RESOURCE_KEYS", "STATUSES", "StudyDir", "TrialFiles",
    "config_columns", "config_hash", "factor_columns", "flatten", "is_factor", "label_from_trial_file",
    "order_columns", "read_trial_result", "semantic_config", "trial_label", "write_trial_result",
]
