"""build_spec for the ResNet families: stage layout, and one clear error per bad option."""
import pytest

from connectome import build_spec, make_arch
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


@pytest.mark.parametrize("options, message", [
    (dict(depth=100), "depth 100 does not fit family 'preact-resnet'"),
    (dict(pattern="dense"), "needs pattern='residual'"),
    (dict(bottleneck=False), "needs bottleneck=True"),
    (dict(block_layers=[3, 3, 3]), "needs block_layers=None"),
])
def test_bad_resnet_options_name_the_problem(options, message):
    with pytest.raises(ConfigError, match=message):
        build_spec(make_arch(preset="preact-resnet-164", **options))
