"""Architecture options: presets and clear errors for what cannot be built."""
import pytest

from connectome import build_spec, make_arch
from connectome.architecture import PRESETS, layers_per_block
from connectome.builder import planned_layers
from connectome.complexity import complexity
from connectome.errors import ConfigError, SpecError
from connectome.study.limits import IN_STUDY_FILE, Limits, check_arch_limits, check_spec_limits


@pytest.mark.parametrize("depth, bc, n", [(40, False, 12), (100, False, 32), (100, True, 16), (250, True, 41), (190, True, 31)])
def test_depth_gives_the_papers_layers_per_block(depth, bc, n):
    assert layers_per_block(make_arch(depth=depth, bottleneck=bc)) == [n, n, n]


@pytest.mark.parametrize("depth, bc", [(41, False), (42, True), (3, False)])
def test_depth_that_does_not_fit_blocks_is_rejected(depth, bc):
    with pytest.raises(ConfigError, match=f"depth {depth} does not fit 3 blocks"):
        layers_per_block(make_arch(depth=depth, bottleneck=bc))


@pytest.mark.parametrize("growth", [0, -4])
def test_non_positive_growth_is_rejected(growth):
    with pytest.raises(ConfigError, match="^invalid architecture: growth: growth must be a positive") as err:
        make_arch(growth=growth)
    assert "\n" not in str(err.value) and "pydantic" not in str(err.value)  # one line, no pydantic banner


def test_unknown_preset_and_key_are_rejected():
    with pytest.raises(ConfigError, match="unknown preset 'densenet999'; known: .*densenet-100-12"):
        make_arch(preset="densenet999")
    with pytest.raises(ConfigError, match="groth: unknown key") as err:
        make_arch(groth=12)
    assert "\n" not in str(err.value)


def test_m_is_checked_against_pattern_and_blocks():
    with pytest.raises(ConfigError, match="applies to pattern 'partial' only"):
        build_spec(make_arch(pattern="dense", m=16))
    with pytest.raises(ConfigError, match="m has 2 values but the network has 3 blocks"):
        build_spec(make_arch(pattern="partial", m=[16, 32]))
    with pytest.raises(SpecError, match="m=999 is impossible"):
        build_spec(make_arch(pattern="partial", m=999))


def test_residual_widths_follow_growth():
    spec = build_spec(make_arch(pattern="residual", depth=16, growth=24))
    assert spec.stem_channels == 24 and spec.transitions == (24, 24)
    with pytest.raises(ConfigError, match="stem must have growth=24"):
        build_spec(make_arch(pattern="residual", depth=16, growth=24, stem_channels=16))


def test_explicit_options_override_the_preset():
    arch = make_arch(preset="densenet121", classes=5)
    assert arch.classes == 5 and arch.growth == 32


def test_block_layers_set_the_recorded_depth_and_blocks():
    assert (make_arch(preset="densenet121").depth, make_arch(preset="densenet121").blocks) == (121, 4)
    arch = make_arch(block_layers=[4, 4, 4], stem="imagenet")
    assert (arch.depth, arch.blocks) == (16, 3)
    assert make_arch(block_layers=[16, 16, 16], bottleneck=True).depth == 100


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_under_the_default_limits(preset):
    arch = make_arch(preset=preset)
    check_arch_limits(arch, Limits(), how=IN_STUDY_FILE)
    spec = build_spec(arch)
    check_spec_limits(spec, Limits())
    assert planned_layers(arch) == sum(block.n_layers for block in spec.blocks)
    assert complexity(spec).params > 0


@pytest.mark.parametrize("options", [dict(depth=40), dict(depth=100, bottleneck=True), dict(block_layers=[3, 5]),
                                     dict(preset="preact-resnet-164"), dict(preset="resnet-110", blocks=2, depth=14),
                                     dict(pattern="fractal", block_layers=[4, 6]), dict(preset="fractalnet-21"),
                                     dict(preset="wrn-16-8", depth=22)])
def test_planned_layers_count_the_spec_s_layer_nodes(options):
    arch = make_arch(**options)
    assert planned_layers(arch) == sum(block.n_layers for block in build_spec(arch).blocks)


def test_the_depth_limit_counts_layer_nodes_not_convs():
    # preact-resnet-1001 is L = 1,001 convs in 330 units: it fits; a DenseNet of 1,300 layers does not
    check_arch_limits(make_arch(preset="preact-resnet-1001"), Limits(), how=IN_STUDY_FILE)
    with pytest.raises(ValueError, match=r"^depth is 1,300 \(1,296 layers\), over the limit of 1,000 layers"):
        check_arch_limits(make_arch(depth=1300), Limits(), how=IN_STUDY_FILE)
