"""Each figure draws what it claims: the data behind its marks, labels, legends and bands."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from scipy import stats

from connectome.analysis import (load, pareto_configs, plot_error_vs_params, plot_pareto,
                                 plot_training_curves, save_figure)


@pytest.fixture
def completed(results_dir):
    return load(results_dir).completed()


def test_error_vs_params_has_a_mean_line_per_pattern(completed):
    fig = plot_error_vs_params(completed)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("parameters", "test error")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["dense (4 trials)", "partial (5 trials)"]
    assert len(ax.containers) == 2  # one errorbar (mean line, ±1 s.d. bars) per pattern
    for bars, (_, group) in zip(ax.containers, completed.groupby("pattern")):
        line = bars.lines[0]
        means = group.groupby("params")["test_error"].mean()
        np.testing.assert_allclose(np.asarray(line.get_xdata(), dtype=float), means.index)
        np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), means.to_numpy())


def test_training_curves_mean_and_band_over_seeds(results_dir):
    results = load(results_dir)
    fig = plot_training_curves(results.epochs, results.completed(), hue="pattern")
    loss_ax, acc_ax = fig.axes
    assert (loss_ax.get_ylabel(), acc_ax.get_ylabel()) == ("training loss", "validation accuracy")
    # growth 4 and 8 pooled per pattern: the legend says so instead of calling them seeds
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["dense (4 trials of 2 configurations)",
                                                                        "partial (5 trials of 2 configurations)"]
    epochs = results.epochs.merge(results.completed()[["trial_id", "pattern"]], on="trial_id")
    dense = epochs[epochs["pattern"] == "dense"].groupby("epoch")["val_acc"]
    np.testing.assert_allclose(acc_ax.lines[0].get_ydata(), dense.mean().to_numpy())
    bands = [c for c in acc_ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    top = bands[0].get_paths()[0].vertices[:, 1].max()
    half = stats.t.ppf(0.975, dense.count() - 1) * dense.std() / np.sqrt(dense.count())
    assert top == pytest.approx(min((dense.mean() + half).max(), 1.0))  # 95% t interval, not ±1 s.d.
    assert fig.texts[0].get_text() == ("line: mean over trials (seeds and pooled configurations); "
                                       "band: 95% t interval of the mean")


def test_training_curves_label_several_grouping_columns(results_dir):
    results = load(results_dir)
    fig = plot_training_curves(results.epochs, results.completed(), hue=["pattern", "growth"],
                               metrics=("val_acc",))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == "dense, growth=4 (2 seeds)" and len(labels) == 4


def test_training_curves_call_only_repeats_of_one_configuration_seeds():
    trials = pd.DataFrame({"trial_id": list("abcd"), "pattern": ["dense", "dense", "random", "random"],
                           "seed": [0, 1, 0, 0], "pattern_options.model": [None, None, "er", "ws"]})
    epochs = pd.DataFrame({"trial_id": list("abcd") * 2, "epoch": [1] * 4 + [2] * 4,
                           "val_acc": [0.5, 0.6, 0.4, 0.45, 0.7, 0.72, 0.6, 0.5]})
    fig = plot_training_curves(epochs, trials, metrics=("val_acc",))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["dense (2 seeds)", "random (2 trials of 2 configurations)"]


def test_pareto_figure_marks_exactly_the_front_of_configurations(completed):
    fig = plot_pareto(completed)
    ax = fig.axes[0]
    front = pareto_configs(completed)
    step = ax.lines[-1]
    np.testing.assert_allclose(np.asarray(step.get_xdata(), dtype=float), front["params"])
    np.testing.assert_allclose(np.asarray(step.get_ydata(), dtype=float), front["test_error"])
    circles = ax.collections[-1]
    assert len(circles.get_offsets()) == len(front)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"Pareto front ({len(front)} configurations)" in legend


def test_pareto_figure_ignores_a_lucky_seed():
    df = pd.DataFrame({"pattern": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "params": [100] * 4,
                       "test_error": [0.20, 0.22, 0.35, 0.10]})
    step = plot_pareto(df).axes[0].lines[-1]
    assert np.asarray(step.get_ydata(), dtype=float).tolist() == pytest.approx([0.21])


def test_error_vs_size_intervals_are_t_intervals_inside_zero_one():
    # two seeds far apart: the t interval (±12.7 s/sqrt 2) leaves [0, 1] and must be cut there
    df = pd.DataFrame({"pattern": ["dense"] * 2 + ["partial"] * 3, "seed": [0, 1, 0, 1, 2],
                       "params": [1000, 1000, 800, 800, 800], "test_error": [0.2, 0.8, 0.45, 0.5, 0.55]})
    ax = plot_error_vs_params(df).axes[0]
    bars = ax.containers[0].lines[2][0].get_segments()[0]  # dense's vertical bar
    assert bars[:, 1].min() == 0.0 and bars[:, 1].max() == 1.0
    partial = ax.containers[1].lines[2][0].get_segments()[0][:, 1]
    half = stats.t.ppf(0.975, 2) * np.std([0.45, 0.5, 0.55], ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(sorted(partial), [0.5 - half, 0.5 + half])


def test_error_vs_size_draws_curves_only_when_size_varies(completed):
    curves = plot_error_vs_params(completed).axes[0]  # growth 4 and 8 within each pattern
    assert all(c.lines[0].get_linestyle() == "-" for c in curves.containers)
    one_size = completed[completed["growth"] == 8]
    dots = plot_error_vs_params(one_size).axes[0]
    assert all(c.lines[0].get_linestyle() == "None" for c in dots.containers)
    matched = plot_error_vs_params(completed, joined=False).axes[0]  # a budget study: no size series
    assert all(c.lines[0].get_linestyle() == "None" for c in matched.containers)


def test_error_vs_size_keeps_different_graphs_at_one_budget_apart():
    """Random graphs whose growth a budget sets differ in their generator: marks, not a zig-zag curve."""
    df = pd.DataFrame({"pattern": ["random"] * 4 + ["dense"], "seed": [0] * 5,
                       "pattern_options.model": ["er", "er", "ws", "ba", None],
                       "pattern_options.seed": [0, 1, 0, 0, None], "growth": [9, 11, 11, 12, 4],
                       "params": [64_000, 59_000, 61_000, 56_000, 58_000],
                       "test_error": [0.16, 0.17, 0.21, 0.18, 0.17]})
    ax = plot_error_vs_params(df).axes[0]
    assert all(c.lines[0].get_linestyle() == "None" for c in ax.containers)


def test_size_axis_goes_logarithmic_over_wide_ranges():
    df = pd.DataFrame({"pattern": ["dense"] * 3, "params": [1e3, 1e5, 1e7], "test_error": [0.3, 0.2, 0.1]})
    assert plot_error_vs_params(df).axes[0].get_xscale() == "log"
    assert plot_error_vs_params(df.iloc[:1]).axes[0].get_xscale() == "linear"


def test_save_figure_writes_png_and_svg(tmp_path, completed):
    png, svg = save_figure(plot_pareto(completed), tmp_path / "figs" / "front")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "<svg" in svg.read_text()[:1000]


def test_training_curves_of_a_single_epoch_stay_visible():
    trials = pd.DataFrame({"trial_id": ["a", "b"], "pattern": ["dense", "plain"]})
    epochs = pd.DataFrame({"trial_id": ["a", "b"], "epoch": [1, 1], "train_loss": [1.0, 2.0],
                           "val_acc": [0.5, 0.4]})
    ax = plot_training_curves(epochs, trials).axes[0]
    assert [line.get_marker() for line in ax.lines] == ["o", "o"]
    assert list(ax.get_xticks()) == [1]
    assert ax.get_legend().get_texts()[0].get_text() == "dense (1 seed)"


def test_a_language_models_multiply_adds_axis_says_per_token():
    from connectome.analysis.results import MACS

    rows = pd.DataFrame({"pattern": ["prenorm", "plain"], "test_bpb": [2.6, 4.4], MACS: [1.6e6, 1.6e6],
                         "params": [1.6e6, 1.6e6]})
    assert plot_error_vs_params(rows, x=MACS, y="test_bpb").axes[0].get_xlabel() == "multiply-adds (MACs) per token"
    images = rows.rename(columns={"test_bpb": "test_error"})
    assert plot_error_vs_params(images, x=MACS, y="test_error").axes[0].get_xlabel().endswith("per image")


def test_a_language_models_training_curves_say_bits_per_byte_per_evaluation_interval():
    from connectome.analysis.figures import plot_training_curves

    trials = pd.DataFrame({"trial_id": ["a", "b"], "pattern": ["prenorm", "plain"], "test_bpb": [2.6, 4.4]})
    epochs = pd.DataFrame([{"trial_id": t, "epoch": e, "train_bpb": 3.0 / e, "val_bpb": 3.1 / e}
                           for t in ("a", "b") for e in (1, 2, 3)])
    axes = plot_training_curves(epochs, trials, metrics=("train_bpb", "val_bpb")).axes
    assert [ax.get_xlabel() for ax in axes] == ["evaluation interval"] * 2
    assert [ax.get_ylabel() for ax in axes] == ["training bits per byte", "validation bits per byte"]
    images = plot_training_curves(epochs.rename(columns={"val_bpb": "val_acc"}), trials.drop(columns="test_bpb"),
                                  metrics=("val_acc",)).axes
    assert images[0].get_xlabel() == "epoch" and images[0].get_ylabel() == "validation accuracy"


def _twelve_wirings(groups: int = 12):
    """Trials and per-interval bits per byte of `groups` wirings over 2 seeds (depth_wiring has 12)."""
    trials = pd.DataFrame([{"trial_id": f"w{g}-{s}", "pattern": f"wiring{g:02d}", "seed": s, "params": 1000 + g,
                            "test_bpb": 2.5 + 0.01 * g + 0.001 * s} for g in range(groups) for s in range(2)])
    epochs = pd.DataFrame([{"trial_id": t, "epoch": e, "train_bpb": 3.0 / e, "val_bpb": 3.1 / e}
                           for t in trials["trial_id"] for e in (1, 2)])
    return trials, epochs


def _looks(handles) -> list[tuple]:
    """What tells a legend entry apart: colour, line style, marker."""
    from matplotlib.colors import to_hex

    return [(to_hex(h.get_color()), h.get_linestyle(), h.get_marker()) for h in handles]


@pytest.mark.parametrize("groups", [12, 25])
def test_more_than_ten_groups_each_look_different(groups):
    # depth_wiring's 12 wirings: matplotlib's 10-colour cycle drew attnres and prenorm both blue
    trials, epochs = _twelve_wirings(groups)
    curves = plot_training_curves(epochs, trials, metrics=("val_bpb",))
    looks = _looks(curves.legends[0].legend_handles)  # more than a few groups: one legend below the axes
    assert len(looks) == len(set(looks)) == groups
    colours = {c for c, _, _ in looks}
    assert len(colours) == min(groups, 20)
    marks = plot_error_vs_params(trials, y="test_bpb").axes[0]
    looks = _looks(bars.lines[0] for bars in marks.containers)
    assert len(set(looks)) == groups


def test_ten_groups_keep_matplotlib_s_colours():
    trials, epochs = _twelve_wirings(10)
    ax = plot_training_curves(epochs, trials, metrics=("val_bpb",)).axes[0]
    assert [c for c, _, _ in _looks(ax.lines)] == [f"#{c}" for c in (
        "1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf")]


def test_a_whole_number_option_reads_as_an_integer():
    from connectome.analysis.figures import _group_name

    # a column with gaps (NaN where a pattern has no such option) is float: 0.0 must read 0
    assert _group_name(["pattern", "pattern_options.block"], ("attnres", 0.0)) == "attnres, pattern_options.block=0"
    assert _group_name(["pattern", "lr"], ("prenorm", 0.003)) == "prenorm, lr=0.003"
    assert _group_name(["pattern", "m"], ("partial", np.nan)) == "partial, m=-"


def test_a_dozen_groups_get_one_legend_below_the_axes_and_a_few_keep_theirs_inside():
    from matplotlib.figure import Figure

    from connectome.analysis.figures import INSIDE_LEGEND_MAX, place_legend

    for groups, inside in ((INSIDE_LEGEND_MAX, True), (12, False)):
        fig = Figure(figsize=(6.0, 4.2))
        ax = fig.add_subplot()
        for i in range(groups):
            ax.plot([0, 1], [i, i], label=f"wiring {i}")
        place_legend(fig, [ax], groups)
        assert (ax.get_legend() is not None) == inside and bool(fig.legends) != inside
        assert fig.get_figheight() == (4.2 if inside else pytest.approx(4.2 + 0.2 * 12))  # one column, one row each
