"""Topology vs accuracy: the partial rank correlation separates wiring from parameter count."""
import math

import numpy as np
import pandas as pd
import pytest

from connectome.analysis import write_report
from connectome.analysis.topology import (add_topology_columns, bootstrap_interval, partial_rank_correlation,
                                          plot_topology_correlations, topology_correlations)


def _frame(effect_of_topology: float, n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    params = rng.uniform(1e5, 1e6, n)
    confounded = params * (1 + 0.05 * rng.standard_normal(n))  # a metric that mostly tracks size
    wiring = rng.standard_normal(n)  # a metric independent of size
    acc = 1e-6 * params + effect_of_topology * wiring + 0.02 * rng.standard_normal(n)
    return pd.DataFrame({"params": params, "topo.edges": confounded, "topo.clustering": wiring,
                         "topo.block1.edges": wiring, "topo.density": np.ones(n), "test_acc": acc})


def test_size_proxy_loses_its_correlation_once_params_are_controlled():
    table = topology_correlations(_frame(effect_of_topology=0.0), n_boot=300).set_index("topology")
    assert table.loc["edges", "rho"] > 0.8  # raw: looks like wiring matters
    assert table.loc["edges", "ci_low"] < 0 < table.loc["edges", "ci_high"] or abs(table.loc["edges", "partial_rho"]) < 0.3
    assert list(table.index) == ["edges", "clustering"]  # constant and per-block columns left out


def test_wiring_effect_survives_the_control():
    table = topology_correlations(_frame(effect_of_topology=0.5), n_boot=300).set_index("topology")
    row = table.loc["clustering"]
    assert row["partial_rho"] > 0.7 and row["ci_low"] > 0.4 and row["ci_low"] <= row["partial_rho"] <= row["ci_high"]


def test_the_legend_covers_no_row_of_the_forest_plot():
    # Inside the axes it hid the last row's marker (seen in the 213-trial random-wiring report).
    table = topology_correlations(_frame(effect_of_topology=0.5), n_boot=50)
    fig = plot_topology_correlations(table, "test_acc", "params")
    fig.draw_without_rendering()  # runs the constrained layout
    (ax,), (legend,) = fig.axes, fig.legends
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())


def test_partial_correlation_matches_a_closed_form():
    rng = np.random.default_rng(1)
    x, y, z = rng.standard_normal((3, 200))
    rx, ry, rz = (pd.Series(v).rank().to_numpy() for v in (x, y, z))
    c = np.corrcoef([rx, ry, rz])
    expected = (c[0, 1] - c[0, 2] * c[1, 2]) / math.sqrt((1 - c[0, 2] ** 2) * (1 - c[1, 2] ** 2))
    assert partial_rank_correlation(x, y, z) == pytest.approx(expected)
    assert math.isnan(partial_rank_correlation(np.ones(5), y[:5], z[:5]))
    assert all(math.isnan(v) for v in bootstrap_interval(np.ones(5), y[:5], z[:5], n_boot=50))


def test_ties_get_average_ranks_as_pandas_gives_them():
    from connectome.analysis.topology import _rank

    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 7, 40):
        values = rng.integers(0, 3, n).astype(float)  # many ties
        assert _rank(values).tolist() == pd.Series(values).rank(method="average").tolist(), values
    assert _rank(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_partial_correlation_with_ties_and_a_constant_control_is_the_plain_one():
    x, y = np.array([1.0, 2, 2, 3, 5, 5]), np.array([2.0, 1, 4, 4, 6, 5])
    assert partial_rank_correlation(x, y, np.ones(6)) == pytest.approx(partial_rank_correlation(x, y, None))
    assert partial_rank_correlation(x, y, None) == pytest.approx(pd.Series(x).corr(pd.Series(y), method="spearman"))


def _specs_for_every_seed(results_dir):
    """The fake study keeps spec.json for seed 0 only; replicates share the architecture."""
    for folder in (results_dir / "trials").iterdir():
        first = results_dir / "trials" / (folder.name.rsplit("-s", 1)[0] + "-s0") / "spec.json"
        if first.exists() and not (folder / "spec.json").exists():
            (folder / "spec.json").write_text(first.read_text())


def _study_of(root, layers, seeds):
    """A results dir of dense trials, one architecture per block length in `layers`, spec.json kept for each."""
    import torch

    from analysis.fake_results import epoch_rows, trial_row
    from connectome import build_spec, make_arch
    from connectome.executor import ConnectomeNet
    from connectome.store.layout import StudyDir, write_trial_config, write_trial_result

    sd = StudyDir(root / "topo")
    rows = [trial_row("dense", 4, s % 3) | {"trial_id": f"dense-l{n}-s{s}", "seed": s, "block_layers": str(n),
                                             "params": 1000 * n, "test_acc": 0.5 + 0.01 * n + 0.001 * s}
            for n in layers for s in range(seeds)]
    (sd.root / "trials").mkdir(parents=True)
    sd.stamp(study="topo")
    sd.write_plan([r["trial_id"] for r in rows])
    for row in rows:
        files = sd.trial(row["trial_id"])
        write_trial_config(files, {"arch": {"pattern": "dense"}, "seed": row["seed"]}, study="topo")
        spec = build_spec(make_arch(pattern="dense", block_layers=[int(row["block_layers"])], growth=4, classes=3))
        (files.dir / "spec.json").write_text(spec.to_json())
        torch.save(ConnectomeNet(spec).state_dict(), files.dir / "model.pt")
        sd.record(write_trial_result(files, row, epoch_rows(row)))
    sd.compact()
    return sd.root


def test_report_skips_topology_below_five_architectures(results_dir, text_only):
    _specs_for_every_seed(results_dir)  # 10 completed trials with specs, but 4 graphs only
    text = write_report(results_dir, metric="test_acc").read_text()
    assert "## Topology and test error" in text
    assert "4 distinct architecture(s) (by canonical hash)" in text and "partial_rho" not in text
    assert not (results_dir / "figures" / "topology_correlation.png").exists()


def test_two_architectures_with_many_seeds_get_no_correlation(tmp_path, text_only):
    # the reported defect: two graphs x many seeds passed MIN_TRIALS and showed raw Spearman values only
    path = _study_of(tmp_path, layers=(2, 3), seeds=6)
    text = write_report(path, metric="test_acc").read_text()
    assert "2 distinct architecture(s)" in text and "partial_rho" not in text
    assert not (path / "figures" / "topology_correlation.png").exists()


def test_count_architectures_prefers_the_record_column():
    from connectome.analysis.topology import count_architectures

    frame = pd.DataFrame({"trial_id": list("abcd"), "canonical_hash": ["h1", "h1", "h2", "h3"]})
    assert count_architectures(frame) == 3
    assert count_architectures(frame.drop(columns="canonical_hash")) == 0  # nothing known, no results dir


def test_report_has_the_topology_section(tmp_path, draw_only):
    draw_only("topology_correlation")
    path = _study_of(tmp_path, layers=(2, 3, 4, 5, 6), seeds=1)
    text = write_report(path, metric="test_acc").read_text()
    assert "## Topology and test error" in text and "partial_rho" in text and "5 distinct architectures" in text
    assert (path / "figures" / "topology_correlation.png").stat().st_size > 1000


def test_topology_is_computed_from_specs_for_old_records(results_dir):
    from connectome.analysis import load

    trials = add_topology_columns(load(results_dir).completed(), results_dir)
    known = trials.dropna(subset=["topo.edges"])  # the fake keeps spec.json for seed 0 only
    assert sorted(known["trial_id"]) == ["dense-g4-s0", "dense-g8-s0", "partial-g4-s0", "partial-g8-s0"]
    assert (known.loc[known["pattern"] == "dense", "topo.edges"] == 10).all()  # 3 layers: 4 + 3 + 2 + 1
