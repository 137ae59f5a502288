"""ConvNeXt, EfficientNet and RDNet from the executor: counts and outputs equal to torchvision's and timm's."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from connectome.architecture import make_arch
from connectome.builder import build_model, build_spec
from connectome.complexity import complexity
from connectome.errors import ConfigError
from connectome.interop import load_reference

# preset, reference constructor, renaming rules, published params, published multiply-adds (G, torchvision's)
REFERENCES = {
    "convnext_tiny": (torchvision.models.convnext_tiny, "torchvision-convnext", 28_589_128, 4.46),
    "efficientnet_b0": (torchvision.models.efficientnet_b0, "torchvision-efficientnet", 5_288_548, 0.39),
    "rdnet_tiny": (lambda: _timm().create_model("rdnet_tiny"), "timm-rdnet", 23_863_008, None),
}


def _timm():
    """timm, imported when a test needs it (its import costs seconds)."""
    import timm

    return timm


def _randomise(model: nn.Module) -> nn.Module:
    """Norms and layer scales away from their initial values, so a misplaced tensor shows in the outputs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "layer_scale")):
                p.uniform_(0.2, 1.0)
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.2, 0.2)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("preset", REFERENCES)
def test_preset_counts_equal_the_reference_and_its_published_figures(preset):
    make, _, params, gmacs = REFERENCES[preset]
    cx = complexity(build_spec(make_arch(preset=preset)))
    assert cx.params == params == sum(p.numel() for p in make().parameters())
    if gmacs is not None:
        assert round(cx.flops / 1e9, 2) == gmacs


@torch.no_grad()
@pytest.mark.parametrize("preset", REFERENCES)
def test_preset_outputs_equal_the_reference_given_its_weights(preset):
    make, rules, _, _ = REFERENCES[preset]
    torch.manual_seed(0)
    reference = _randomise(make()).eval()
    model = load_reference(build_model(preset=preset), reference.state_dict(), rules).eval()
    x = torch.randn(2, 3, 32, 32)
    assert (model(x) - reference(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize("options, message", [
    (dict(family="rdnet", pattern="residual", block_layers=[1] * 7), "family 'rdnet' concatenates"),
    (dict(family="efficientnet", block_layers=[1, 2]), "family 'efficientnet' has 7 stages"),
    (dict(family="convnext", pattern="residual", stem_channels=8, growth=16), "not stem_channels=8"),
])
def test_family_options_that_cannot_hold_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        build_spec(make_arch(**options))


def _small(family: str, pattern: str, **options) -> dict:
    """A few-layer network of the family on 32x32 images (the small-image stems)."""
    layers = {"convnext": [2, 3], "efficientnet": [1, 2, 1, 3, 1, 1, 2], "rdnet": [1, 2, 1, 1, 1, 1, 1]}[family]
    base = dict(family=family, pattern=pattern, block_layers=layers, growth=8, stem="cifar", dropout=0.0)
    if family == "rdnet":
        base.update(compression=0.5, growth=16)
    if family == "efficientnet":
        base.update(bn_size=2)
    return {**base, **options}


WIRINGS = [("convnext", p) for p in ("residual", "dense", "partial", "random", "plain")] + [
    ("efficientnet", p) for p in ("residual", "dense", "partial", "random")] + [("rdnet", p) for p in ("dense", "random")]


@pytest.mark.parametrize("family, pattern", WIRINGS)
def test_patterns_over_the_new_ops_build_count_and_train(family, pattern):
    options = {"pattern_options": {"model": "er", "p": 0.5}} if pattern == "random" else {}
    arch = make_arch(**_small(family, pattern, **options))
    model = build_model(arch)
    assert complexity(build_spec(arch), (3, 32, 32)).params == sum(p.numel() for p in model.parameters())
    out = model.train()(torch.randn(2, 3, 32, 32))
    out.square().mean().backward()
    assert out.shape == (2, 10) and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("pattern", ["dense", "residual"])
def test_budget_matching_reaches_equal_parameters_over_convnext_blocks(pattern):
    from connectome.complexity import match_budget

    arch = match_budget(make_arch(**_small("convnext", pattern, compression=0.5)), 60_000, (1, 28, 28))
    assert abs(complexity(build_spec(arch), (1, 28, 28)).params - 60_000) < 0.06 * 60_000


@pytest.mark.parametrize("family", ["convnext", "efficientnet", "rdnet"])
def test_memory_efficient_mode_gives_the_same_outputs_and_gradients(family):
    import copy

    default = build_model(make_arch(**_small(family, "dense", dropout=0.1)))
    efficient = copy.deepcopy(default).set_memory_efficient(True)
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for model in (default, efficient):
        torch.manual_seed(3)
        model.train()(x).square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_stochastic_depth_is_the_wiring_language_s_node_drop():
    spec = build_spec(make_arch(**_small("convnext", "residual", stochastic_depth=0.5)))
    drops = [n.drop for b in spec.blocks for n in b.nodes if n.op == "convnext"]
    assert drops == pytest.approx([l / 5 * 0.5 for l in range(1, 6)])  # Huang et al.'s l / L * p_L


def test_a_user_dag_of_convnext_layers_reads_back(tmp_path):
    import json

    graph = {"directed": True, "graph": {}, "nodes": [{"id": 0}, {"id": 1}, {"id": 2, "agg": "sum"}, {"id": 3}],
             "links": [{"source": 0, "target": 1}, {"source": 0, "target": 2}, {"source": 1, "target": 2},
                       {"source": 0, "target": 3}, {"source": 2, "target": 3}]}
    path = tmp_path / "block.json"
    path.write_text(json.dumps(graph))
    arch = make_arch(family="convnext", pattern="file", pattern_options={"path": str(path)}, blocks=1, growth=8,
                     stem="cifar", stem_channels=8, dropout=0.0)
    spec = build_spec(arch)
    assert [n.op for n in spec.blocks[0].nodes] == ["input", "convnext", "convnext", "convnext", "identity"]
    assert build_model(arch)(torch.randn(1, 3, 16, 16)).shape == (1, 10)


@pytest.mark.parametrize("preset, line", [("convnext_tiny", "params 28,589,128 (28.59M)   FLOPs 4.456 G multiply-adds"),
                                          ("efficientnet_b0", "params 5,288,548 (5.29M)   FLOPs 0.386 G multiply-adds")])
def test_graph_prints_the_published_params_and_multiply_adds(capsys, preset, line):
    from connectome.cli import main

    assert main(["graph", "--preset", preset]) == 0
    assert line in capsys.readouterr().out


def test_source_usage_reads_the_first_channel_mixing_map_of_each_layer():
    model = build_model(make_arch(**_small("convnext", "dense")))
    usage = model.source_usage()[1]  # block 2: 3 layers reading the block input and each other
    assert usage.shape == (3, 3) and (usage[~torch.isnan(torch.from_numpy(usage)).numpy()] > 0).all()
