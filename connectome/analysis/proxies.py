"""How well zero-cost proxies at initialisation rank the trained networks (Spearman, bootstrap interval)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from connectome.analysis.topology import (MIN_ARCHITECTURES, MIN_TRIALS, bootstrap_interval, count_architectures,
                                          partial_rank_correlation)
from connectome.proxies import PREFIX
from connectome.store.layout import StudyDir

# Parameter count is the baseline every proxy has to beat.
BASELINE = "params"
# Widest 95% interval of a rank correlation that still says something (a correlation lies in [-1, 1], width 2):
# when every proxy's interval is wider, one sentence replaces a table of noise.
MAX_INTERVAL_WIDTH = 1.0


def proxy_correlations(trials: pd.DataFrame, metric: str = "test_acc", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per proxy (and params): n, Spearman rho with `metric` and its 95% bootstrap interval."""
    cols = [c for c in trials.columns if c.startswith(PREFIX)] + ([BASELINE] if BASELINE in trials else [])
    rows = []
    for col in cols:
        data = trials[[col, metric]].apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
        if len(data) < MIN_TRIALS or data[col].nunique() < 2:
            continue
        x, y = data[col].to_numpy(float), data[metric].to_numpy(float)
        lo, hi = bootstrap_interval(x, y, None, n_boot=n_boot, seed=seed)
        rows.append({"proxy": col.removeprefix(PREFIX), "n": len(data),
                     "rho": partial_rank_correlation(x, y, None), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["proxy", "n", "rho", "ci_low", "ci_high"])


def informative(table: pd.DataFrame) -> bool:
    """Whether any correlation of the table has a 95% interval no wider than MAX_INTERVAL_WIDTH."""
    return bool(((table["ci_high"] - table["ci_low"]) <= MAX_INTERVAL_WIDTH).any())


def uninformative_text(table: pd.DataFrame) -> str:
    """The one sentence that replaces a table of correlations too uncertain to rank anything."""
    narrowest = (table["ci_high"] - table["ci_low"]).min()
    return (f"Every proxy's rank correlation has a 95% interval wider than {MAX_INTERVAL_WIDTH:g} (the narrowest "
            f"is {narrowest:.2f} wide, of the 2 a correlation can span, over {int(table['n'].max())} trials): this "
            "study cannot say whether any proxy ranks the networks, so no table is shown.")


def proxy_section(doc, results, metric: str, out: Path) -> None:
    """Report section: rank correlation of each proxy (and of params) with the metric."""
    completed = results.completed()
    if not any(c.startswith(PREFIX) for c in completed.columns) or metric not in completed:
        return
    doc.heading("Zero-cost proxies")
    archs = count_architectures(completed.dropna(subset=[metric]), results.path)
    # seeds of one graph score alike, so the ranks compare a handful of graphs (0: no hash or spec to count by)
    if 0 < archs < MIN_ARCHITECTURES:
        doc.text(f"{archs} distinct architecture(s) among the completed trials with `{metric}`, fewer than "
                 f"{MIN_ARCHITECTURES}: too few to tell whether a proxy ranks networks, so no proxy correlation "
                 "is shown.")
        return
    table = proxy_correlations(completed, metric=metric)
    if table.empty:
        doc.text(f"Fewer than {MIN_TRIALS} completed trials with proxies and `{metric}`: no proxy correlation.")
        return
    if not informative(table):
        doc.text(uninformative_text(table))
        return
    doc.text(f"Spearman rank correlation of each proxy, computed at initialisation, with the final `{metric}`, "
             "with a 95% percentile bootstrap interval over trials; `params` is the baseline a proxy must beat.")
    doc.table(table.round(3))


def prescreen_section(doc, results_dir: Path) -> None:
    """Report section: how many configurations the study's pre-screen trained and which it skipped (prescreen.csv)."""
    path = StudyDir(results_dir).prescreen_file
    if not path.is_file():
        return
    table = pd.read_csv(path)
    configs = table.drop_duplicates("configuration")
    skipped = configs[configs["status"] == "skipped"]
    doc.heading("Pre-screen")
    proxy = table["proxy"].iloc[0] if len(table) else "?"
    doc.text(f"{len(configs) - len(skipped)} of {len(configs)} configurations were trained: the ones ranked highest "
             f"by `{proxy}` at initialisation (mean over seeds). The {len(skipped)} skipped ones were never trained; "
             f"they are not failures and have no result. Every candidate's score and rank is in `{path.name}`.")
    if len(skipped):
        doc.table(skipped[["configuration", "params", "score", "rank"]].sort_values("rank").head(30))
