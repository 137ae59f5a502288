"""ConvNeXt, EfficientNet and RDNet from the executor: counts and outputs equal to torchvision's and timm's."""
from __future__ import annotations

import pytest
import timm
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
    "rdnet_tiny": (lambda: timm.create_model("rdnet_tiny"), "timm-rdnet", 23_863_008, None),
}


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
