"""The paper's published numbers as data: Table 1 of arXiv 1608.06993 v1 (Huang et al., 2016).

    from connectome.reference import table1, paper_rows
    table1()                      # one row per (method, depth, dataset setting); error as a fraction
    paper_rows(trials)            # the Table 1 rows a study's trials reproduce (same preset and setting)

The CSV beside this module is a transcription of v1's Table 1 (`table1.csv`, shipped as
package data). Settings: C10, C10+, C100, C100+, SVHN ("+" = the standard crop + flip
augmentation). `run_by_densenet_authors` marks the table's asterisk (results the DenseNet
authors ran themselves). `preset` names the connectome preset that builds the row's network.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

# Dataset setting of Table 1 -> (connectome dataset name, augmentation).
SETTINGS = {
    "C10": ("cifar10", False), "C10+": ("cifar10", True),
    "C100": ("cifar100", False), "C100+": ("cifar100", True),
    "SVHN": ("svhn", False),
}
# The trial column comparable to Table 1: the test error at the end of training (CIFAR's
# final runs), or at the epoch of lowest validation error (SVHN, as the paper selects).
PAPER_METRIC = {"SVHN": "test_error_at_best_val"}
TABLE1_COLUMNS = ["method", "citation", "depth", "params_millions", "growth", "preset", "setting",
                  "error", "run_by_densenet_authors"]


def table1() -> pd.DataFrame:
    """Table 1 of arXiv 1608.06993 v1, one row per (method, depth, setting); `error` is a fraction."""
    with resources.files(__package__).joinpath("table1.csv").open("r", encoding="utf-8") as f:
        table = pd.read_csv(f, dtype={"preset": "string", "setting": "string"})
    table["depth"] = table["depth"].astype("Int64")
    table["growth"] = table["growth"].astype("Int64")
    return table[TABLE1_COLUMNS]


def setting_of(dataset: str, augment: bool | None) -> str | None:
    """Table 1's setting name for a dataset and augmentation (None = the dataset's default)."""
    if augment is None:
        from connectome.training.catalog import DATASETS

        if dataset not in DATASETS:
            return None
        augment = DATASETS[dataset].augment
    matches = [name for name, key in SETTINGS.items() if key == (dataset, bool(augment))]
    return matches[0] if matches else None


def trial_settings(trials: pd.DataFrame) -> pd.Series:
    """Table 1's setting of each trial (from `data.name` and `data.augment`), None if it has none."""
    if "data.name" not in trials:
        return pd.Series(None, index=trials.index, dtype=object)
    augment = trials["data.augment"] if "data.augment" in trials else pd.Series(None, index=trials.index)
    return pd.Series([setting_of(d, _flag(a)) for d, a in zip(trials["data.name"], augment)],
                     index=trials.index, dtype=object)


def paper_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Table 1 rows whose preset, setting (and depth, if recorded) some trial shares."""
    if trials.empty or "preset" not in trials:
        return pd.DataFrame(columns=TABLE1_COLUMNS)
    # the depth too, when recorded: a preset whose depth was overridden is another network
    with_depth = "depth" in trials
    depths = trials["depth"] if with_depth else [None] * len(trials)
    keys = {(p, s, _int(d)) for p, s, d in zip(trials["preset"], trial_settings(trials), depths)
            if isinstance(p, str) and s}
    table = table1()
    hit = [(p, s, _int(d) if with_depth else None) in keys
           for p, s, d in zip(table["preset"], table["setting"], table["depth"])]
    return table[hit].reset_index(drop=True)


def _int(value) -> int | None:
    """A depth as an int, or None when missing."""
    return None if value is None or pd.isna(value) else int(value)


def _flag(value) -> bool | None:
    """A record's augment value (bool, None/NaN, or a string from parquet) as a bool or None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.lower())
    return bool(value)
