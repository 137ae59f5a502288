"""build_spec for the ResNet families: stage layout, and one clear error per bad option."""
import pytest

from connectome import build_spec, make_arch
from connectome.spec import NetworkSpec
from connectome.errors import ConfigError


def test_preact_resnet_stages():
    spec = build_spec(make_arch(preset="preact-resnet-164"))
    # 18 units per stage: stage 1's first is in the stem, stages 2-3 start with a transition unit
    assert [b.n_layers for b in spec.blocks] == [17, 17, 17]
    assert (spec.stem_channels, spec.transitions, spec.blocks[-1].out_channels) == (64, (128, 256), 256)
    assert (spec.stem, spec.transition, spec.head) == ("preact-entry", "preact", "bn-relu")


def test_resnet_110_stages():
    spec = build_spec(make_arch(preset="resnet-110"))
    assert [b.n_layers for b in spec.blocks] == [18, 17, 17]  # 54 basic units, 108 convs
    assert (spec.stem_channels, spec.transitions) == (16, (32, 64))
    assert (spec.stem, spec.transition, spec.head) == ("postact", "postact", "pool")


def test_densenet_hash_unchanged_by_the_new_spec_fields():
    spec = build_spec(make_arch(preset="densenet-40-12"))
    assert "transition" not in spec.to_dict() and "head" not in spec.to_dict()
    assert build_spec(make_arch(preset="resnet-110")).to_dict()["transition"] == "postact"


def test_block_dropout_round_trips_through_the_spec_file_and_stays_out_at_its_default():
    spec = build_spec(make_arch(preset="fractalnet-21-droppath"))
    assert spec.block_dropout == (0.0, 0.1, 0.2, 0.3, 0.4) and spec.layer_dropout == spec.block_dropout
    assert NetworkSpec.from_json(spec.to_json()) == spec
    plain = build_spec(make_arch(preset="fractalnet-21"))
    assert "block_dropout" not in plain.to_dict() and plain.layer_dropout == (0.0,) * 5


@pytest.mark.parametrize("options, message", [
    (dict(block_dropout=[0.1, 0.2]), "block_dropout has 2 rates but the network has 5 blocks"),
    (dict(block_dropout=[0.0, 0.1, 0.2, 0.3, 1.0]), r"block_dropout needs one rate in \[0, 1\) per block"),
    (dict(block_dropout=[]), r"block_dropout needs one rate in \[0, 1\) per block"),
])
def test_bad_block_dropout_names_the_problem(options, message):
    with pytest.raises(ConfigError, match=message):
        build_spec(make_arch(preset="fractalnet-21", **options))


@pytest.mark.parametrize("options, message", [
    (dict(block_layers=[4, 5]), "family 'highway' needs blocks=3"),
    (dict(pattern="residual"), "needs pattern='highway'"),
    (dict(stochastic_depth=0.5), "needs stochastic_depth=None"),
])
def test_bad_highway_options_name_the_problem(options, message):
    with pytest.raises(ConfigError, match=message):
        build_spec(make_arch(preset="highway-19", **options))
    with pytest.raises(ConfigError, match=r"depth 21 does not fit 3 blocks: need depth = 3\*n \+ 5"):
        build_spec(make_arch(family="highway", pattern="highway", depth=21))


def test_highway_depth_counts_its_head_conv():
    assert make_arch(preset="highway-19").depth == 19
    spec = build_spec(make_arch(family="highway", pattern="highway", depth=20))  # 15 highway layers + 5
    assert [b.n_layers for b in spec.blocks] == [5, 5, 5]


@pytest.mark.parametrize("options, message", [
    (dict(depth=100), "depth 100 does not fit family 'preact-resnet'"),
    (dict(pattern="dense"), "needs pattern='residual'"),
    (dict(bottleneck=False), "needs bottleneck=True"),
    (dict(block_layers=[3, 3, 3]), "needs block_layers=None"),
])
def test_bad_resnet_options_name_the_problem(options, message):
    with pytest.raises(ConfigError, match=message):
        build_spec(make_arch(preset="preact-resnet-164", **options))
