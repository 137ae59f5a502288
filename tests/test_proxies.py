"""Zero-cost proxies: every proxy is finite, leaves model and RNG untouched, and matches a hand computation."""
import math

import pytest
import torch
import torch.nn.functional as F

from connectome import build_spec, make_arch
from connectome.executor import ConnectomeNet
from connectome.proxies import PROXIES, naswot, proxy_columns, snip


def _model(pattern="dense"):
    torch.manual_seed(0)
    return ConnectomeNet(build_spec(make_arch(pattern=pattern, block_layers=[2, 2], growth=4, classes=4)))


def _batch(n=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("name", sorted(PROXIES))
@pytest.mark.parametrize("pattern", ["dense", "residual"])
def test_every_proxy_is_finite(name, pattern):
    import copy

    value = PROXIES[name](copy.deepcopy(_model(pattern)), *_batch())
    assert math.isfinite(value)


def test_proxies_leave_model_and_rng_untouched():
    model, (x, y) = _model(), _batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    cols = proxy_columns(model, x, y)
    assert set(cols) == {f"proxy.{n}" for n in PROXIES}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.random.get_rng_state()) and model.training


def test_snip_matches_a_hand_computation():
    model, (x, y) = _model(), _batch()
    import copy

    reference = copy.deepcopy(model).train()
    F.cross_entropy(reference(x), y).backward()
    convs = [m for m in reference.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    expected = sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in convs)
    assert snip(copy.deepcopy(model), x, y) == pytest.approx(expected, rel=1e-5)


def test_naswot_rewards_inputs_the_network_separates():
    import copy

    model, (x, y) = _model(), _batch()
    distinct = naswot(copy.deepcopy(model), x, y)
    repeated = naswot(copy.deepcopy(model), x[:1].repeat(16, 1, 1, 1), y)  # one image 16 times: K singular
    assert distinct > repeated


def test_resnet_presets_get_proxies_and_a_proxy_never_fails_a_trial(monkeypatch, caplog):
    """The ResNet units call F.relu (no nn.ReLU to hook): NASWOT is NaN, the other proxies finite."""
    import connectome.proxies as proxies

    torch.manual_seed(0)
    model = ConnectomeNet(build_spec(make_arch(preset="preact-resnet-164", depth=11, classes=4)))
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,))
    cols = proxy_columns(model, x, y)
    assert math.isnan(cols["proxy.naswot"])
    assert all(math.isfinite(v) for k, v in cols.items() if k != "proxy.naswot")

    def broken(model, x, y):
        raise RuntimeError("boom")

    monkeypatch.setitem(proxies.PROXIES, "broken", broken)
    cols = proxy_columns(_model(), *_batch())
    assert math.isnan(cols["proxy.broken"]) and "proxy broken not computed" in caplog.text
