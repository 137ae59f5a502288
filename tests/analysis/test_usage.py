"""Source-usage heatmap (arXiv 1608.06993 v1, Fig. 4) on models whose weights are set by hand."""
import numpy as np
import pytest
import torch

from connectome import build_model
from connectome.analysis import model_usage, normalize_usage, plot_source_usage

# Constant weight per (layer, source) in a dense block of 3 layers, growth 4, 16-channel stem.
HAND = {1: {0: 1.0}, 2: {0: 0.5, 1: 2.0}, 3: {0: 3.0, 1: 0.0, 2: -1.5}}


def hand_set_dense():
    model = build_model(pattern="dense", block_layers=[3], growth=4, classes=3)
    widths = [16, 4, 4]  # channels of sources 0, 1, 2, concatenated oldest first
    with torch.no_grad():
        for layer, sources in HAND.items():
            weight = model.blocks[0].nodes[str(layer)].op.in_conv.weight  # (4, C_in, 3, 3)
            start = 0
            for src, value in sorted(sources.items()):
                weight[:, start:start + widths[src]] = value
                start += widths[src]
            assert start == weight.shape[1]
    return model


def expected_raw() -> np.ndarray:
    raw = np.full((3, 3), np.nan)
    for layer, sources in HAND.items():
        for src, value in sources.items():
            raw[layer - 1, src] = abs(value) * 6.0  # sqrt(4 outputs * 3 * 3) per channel
    return raw


def test_normalize_usage_divides_each_layer_by_its_largest():
    m = np.array([[2.0, np.nan], [1.0, 4.0]])
    np.testing.assert_allclose(normalize_usage(m), [[1.0, np.nan], [0.25, 1.0]])
    np.testing.assert_array_equal(normalize_usage(np.array([[0.0, 0.0]])), [[0.0, 0.0]])
    np.testing.assert_array_equal(normalize_usage(np.array([[np.nan]])), [[np.nan]])


def test_usage_of_hand_set_weights():
    model = hand_set_dense()
    np.testing.assert_allclose(model.source_usage()[0], expected_raw(), rtol=1e-6)
    [usage] = model_usage(model)
    np.testing.assert_allclose(usage, [[1.0, np.nan, np.nan],
                                       [0.25, 1.0, np.nan],
                                       [1.0, 0.0, 0.5]], rtol=1e-6)


def test_heatmap_draws_source_rows_and_target_columns():
    [usage] = model_usage(hand_set_dense())
    fig = plot_source_usage([usage], title="hand-set")
    ax = fig.axes[0]
    image = ax.images[0].get_array()  # (source, target) as drawn
    np.testing.assert_allclose(image.filled(np.nan), usage.T, rtol=1e-6)
    np.testing.assert_array_equal(image.mask, np.isnan(usage.T))
    assert image[0, 2] == pytest.approx(1.0) and image[1, 2] == pytest.approx(0.0)  # layer 3: input, not layer 1
    assert ax.get_xlabel() == "target layer ℓ" and ax.get_ylabel().startswith("source s")
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # source 0 at the top
    assert ax.get_xlim() == pytest.approx((0.5, 3.5))
    assert fig.axes[-1].get_ylabel() == "weight norm / layer's largest"  # the colour bar


@pytest.mark.parametrize("pattern,options", [("partial", {"m": 4}), ("plain", {}),
                                             ("random", {"pattern_options": {"model": "er", "p": 0.5, "seed": 1}})])
def test_heatmap_of_other_dags_masks_absent_edges(pattern, options):
    model = build_model(pattern=pattern, block_layers=[4, 3], growth=4, classes=3, **options)
    usage = model_usage(model)
    fig = plot_source_usage(usage)
    assert len(usage) == 2 and [ax.get_title() for ax in fig.axes[:2]] == ["block 1", "block 2"]
    for ax, matrix in zip(fig.axes, usage):
        assert matrix.shape == (len(matrix), len(matrix))
        np.testing.assert_array_equal(ax.images[0].get_array().mask, np.isnan(matrix.T))
        assert np.nanmax(matrix, axis=1) == pytest.approx(1.0)  # every layer reads something


def test_feature_usage_covers_the_whole_network_per_feature_map():
    from connectome.analysis import feature_usage

    model = build_model(pattern="dense", block_layers=[2, 2, 2], growth=3, classes=4)
    with torch.no_grad():
        model.transitions[0].conv.weight.zero_()
        model.transitions[0].conv.weight[:, 17] = 2.0  # block 1, layer 1's second map
        model.head.classifier.weight.fill_(1.0)
    frame = feature_usage(model)
    assert list(dict.fromkeys(frame.target)) == [
        "block1.layer1", "block1.layer2", "transition1", "block2.layer1", "block2.layer2", "transition2",
        "block3.layer1", "block3.layer2", "classifier"]
    t1 = frame[frame.target == "transition1"]
    assert len(t1) == 16 + 2 * 3  # every map of block 1's output: stem 16, two layers of 3
    hot = t1[t1.value == 1.0]
    assert list(zip(hot.source, hot.channel)) == [("block1.layer1", 1)]
    assert t1.value.sum() == 1.0 and hot.norm.item() == pytest.approx(2.0 * 22**0.5)
    head = frame[frame.target == "classifier"]
    assert set(head.source) == {"transition2", "block3.layer1", "block3.layer2"}
    assert (head.value == 1.0).all() and head.norm.iloc[0] == pytest.approx(2.0)  # sqrt(4 classes)
    assert frame.groupby("target").value.max().eq(1.0).all()  # each column normalised by its max


def test_feature_usage_follows_partial_windows_and_pools_per_source():
    from connectome.analysis import feature_usage

    model = build_model(pattern="partial", block_layers=[3], growth=2, m=6, stem_channels=8, classes=2)
    frame = feature_usage(model)
    layer3 = frame[frame.target == "block1.layer3"]  # last 6 of [stem 8, layer1 2, layer2 2]
    assert list(zip(layer3.source, layer3.channel)) == [
        ("stem", 6), ("stem", 7), ("block1.layer1", 0), ("block1.layer1", 1),
        ("block1.layer2", 0), ("block1.layer2", 1)]
    pooled = feature_usage(model, per_source=True)
    row = pooled[(pooled.target == "block1.layer3") & (pooled.source == "stem")]
    maps = layer3[layer3.source == "stem"].norm
    assert row.norm.item() == pytest.approx(float((maps**2).mean() ** 0.5))
    assert pooled.channel.isna().all()


def test_plot_feature_usage_marks_transitions_and_classifier():
    from connectome.analysis import feature_usage
    from connectome.analysis.figures import plot_feature_usage

    fig = plot_feature_usage(feature_usage(build_model(pattern="dense", block_layers=[2, 2, 2], growth=3)))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["block 1", "T1", "block 2", "T2", "block 3", "C"]
    assert sum(p.get_edgecolor()[:3] == (1.0, 0.0, 0.0) for p in ax.patches) == 3  # T1, T2, C boxed


def test_plot_feature_usage_keeps_a_long_trial_label_inside_the_figure():
    from connectome.analysis import feature_usage
    from connectome.analysis.figures import plot_feature_usage

    title = ("feature usage: random, growth=9, pattern_options.model=er, pattern_options.p=0.2, "
             "pattern_options.seed=0, seed 0, whole network")
    fig = plot_feature_usage(feature_usage(build_model(pattern="dense", block_layers=[2, 2, 2], growth=3)), title=title)
    fig.canvas.draw()
    shown = fig.axes[0].title
    box, frame = shown.get_window_extent(), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1
    assert shown.get_text().replace("\n", " ") == title


@pytest.mark.timeout(20)
def test_feature_usage_of_chains_of_joins_computes_each_join_once():
    """A highway block's gated joins each read the one before through two paths (carry and layer): each
    channel map is computed once per node (the table1 wirings study's report hung here, the work growing
    as width ** layers: 29 s for this block before, under 1 s now)."""
    from connectome.analysis import feature_usage

    model = build_model(pattern="highway", block_layers=[6], growth=12, classes=3)
    frame = feature_usage(model, per_source=True)
    # the last gate mixes the carry (every earlier layer and the stem) with the last layer: all reach the classifier
    classifier = set(frame.loc[frame["target"] == "classifier", "source"])
    assert classifier == {"stem", *(f"block1.layer{k}" for k in range(1, 7))}
    assert frame["value"].between(0, 1).all()
