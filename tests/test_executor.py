"""The executor: every pattern runs; equivalence with hand-written and torchvision models."""
import copy

import networkx as nx
import pytest
import torch
import torchvision
from torch import nn

from connectome import PATTERNS, build_model, build_spec, make_arch
from connectome.executor import ConnectomeNet
from connectome.interop import load_torchvision_densenet
import reference_resnets
from reference_resnets import network_state


def _arch(pattern, tmp_path=None, **kw):
    opts = {"random": {"model": "ws", "k": 2, "p": 0.5, "seed": 2}}.get(pattern, {})
    if pattern == "file":
        g = nx.DiGraph([(0, 1), (0, 2), (1, 3), (2, 3)])
        path = tmp_path / "user.graphml"
        nx.write_graphml(g, path)
        opts = {"path": str(path)}
    kw.setdefault("block_layers", [4, 4] if pattern == "fractal" else [3, 3])  # fractal: 2^(C-1) layers
    return make_arch(pattern=pattern, pattern_options=opts, growth=6, stem_channels=None, **kw)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("bottleneck", [False, True])
def test_every_pattern_runs_forward_and_backward(pattern, bottleneck, tmp_path):
    model = build_model(_arch(pattern, tmp_path, bottleneck=bottleneck, classes=5, dropout=0.1))
    x = torch.randn(4, 3, 12, 12)
    out = model(x)
    assert out.shape == (4, 5)
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_grayscale_and_odd_sizes():
    model = build_model(pattern="dense", block_layers=[2, 2, 2], growth=4, in_channels=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


class PreActStack(nn.Module):
    """A hand-written pre-activation ResNet stage: x <- x + conv(relu(bn(x)))."""

    def __init__(self, width, n):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False))
            for _ in range(n)
        )

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return x


@pytest.mark.parametrize("train", [True, False])
def test_residual_equals_hand_written_preact_resnet(train):
    model = build_model(pattern="residual", block_layers=[4], growth=8)
    block = model.blocks[0]
    ref = PreActStack(8, 4)
    for v, layer in enumerate(ref.layers, start=1):
        op = block.nodes[str(v)].op
        nn.init.normal_(layer[0].weight)
        nn.init.normal_(layer[0].bias)
        op.norm1.load_state_dict(layer[0].state_dict())
        op.conv1.load_state_dict(layer[2].state_dict())
    block.train(train), ref.train(train)
    x = torch.randn(3, 8, 10, 10, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, expected = block(x), ref(x_ref)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)  # same sums in the same order
    out.sum().backward(), expected.sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-6, rtol=1e-5)


def test_residual_blocks_keep_a_running_sum():
    block = build_model(pattern="residual", block_layers=[6], growth=8).blocks[0]
    assert [step.base for step in block.plan] == [None, 1, 2, 3, 4, 5, 6]
    assert all(len(step.frees) <= 1 for step in block.plan)  # each map released after its one reader
    dense = build_model(pattern="dense", block_layers=[6], growth=8).blocks[0]
    assert all(step.base is None for step in dense.plan)


def _randomise_norms(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)


@torch.no_grad()
@pytest.mark.parametrize("side", [64, 32])  # at 32 px the last block runs at 1x1 (the centre-tap conv)
def test_torchvision_densenet121_weights_give_the_same_outputs(side):
    tv = torchvision.models.densenet121()
    _randomise_norms(tv)
    model = load_torchvision_densenet(build_model(preset="densenet121"), tv.state_dict())
    x = torch.randn(2, 3, side, side)
    diff = (model.eval()(x) - tv.eval()(x)).abs().max().item()
    assert diff < 1e-4


@pytest.mark.parametrize("preset, extra", [
    ("densenet-40-12", {}), ("densenet-bc-100-12", {}),
    ("partial-40-12", {}), ("densenet-40-12", {"pattern": "residual", "growth": 8}),
    ("densenet-bc-100-12", {"stem": "imagenet"}),  # blocks at 4, 2 and 1 px: the centre tap, recomputed
])
def test_memory_efficient_mode_gives_identical_outputs_gradients_and_stats(preset, extra):
    arch = make_arch(preset=preset, blocks=3, depth=16 if "bc" in preset else 10, dropout=0.1, **extra)
    default = build_model(arch)
    efficient = copy.deepcopy(default).set_memory_efficient(True)
    x = torch.randn(4, 3, 16, 16)
    outs = []
    for model in (default, efficient):
        torch.manual_seed(7)  # same dropout masks in both runs
        out = model.train()(x)
        out.square().mean().backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    for (name, a), b in zip(default.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)
    for (name, a), b in zip(default.named_buffers(), efficient.buffers()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_channels_last_and_bf16_autocast_run_on_cpu():
    model = build_model(pattern="dense", block_layers=[2, 2], growth=4)
    x = torch.randn(2, 3, 16, 16)
    ref = model.eval()(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.1


def test_forward_does_not_mutate_the_module():
    model = build_model(pattern="sparse", block_layers=[5], growth=4).eval()
    before = [(v, n) for v, n, *_ in model.blocks[0].plan]
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(model(x), model(x))
    assert [(v, n) for v, n, *_ in model.blocks[0].plan] == before


def test_source_usage_follows_the_graph_and_the_weights():
    model = build_model(pattern="partial", block_layers=[4], growth=4, stem_channels=8)
    usage = model.source_usage()[0]  # rows: layers 1..4, columns: sources 0..3
    assert usage.shape == (4, 4)
    reads = [[torch.isnan(torch.tensor(usage[r, c])).item() is False for c in range(4)] for r in range(4)]
    assert reads == [[True, False, False, False], [True, True, False, False],
                     [False, True, True, False], [False, False, True, True]]
    conv = model.blocks[0].nodes["3"].op.conv1
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 4:8] = 2.0  # layer 3 reads x1 (4 channels) then x2 (4 channels)
    usage = model.source_usage()[0]
    assert usage[2, 1] == 0.0
    assert usage[2, 2] == pytest.approx(2.0 * (4 * 4 * 9) ** 0.5 / 2)


def test_spec_round_trip_builds_the_same_network():
    spec = build_spec(make_arch(pattern="random", block_layers=[5, 5], pattern_options={"model": "er", "p": 0.4}))
    a, b = ConnectomeNet(spec), ConnectomeNet(type(spec).from_json(spec.to_json()))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("preset, depth, reference", [
    ("preact-resnet-164", 29, reference_resnets.PreActResNet),
    ("resnet-110", 20, reference_resnets.ResNet),
])
@pytest.mark.parametrize("train", [True, False])
def test_resnet_presets_equal_hand_written_resnets(preset, depth, reference, train):
    model = build_model(preset=preset, depth=depth)
    ref = reference(depth)
    _copy_weights(model, ref)
    x = torch.randn(3, 3, 16, 16)
    model.train(train), ref.train(train)
    torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-4)
    # in train mode both updated their BN statistics identically
    torch.testing.assert_close(network_state(model), list(ref.state_dict().values()), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("depth, k, dropout", [(10, 2, 0.0), (16, 1, 0.0), (16, 2, 0.3)])
@pytest.mark.parametrize("train", [True, False])
def test_wide_resnets_equal_hand_written_wide_resnets(depth, k, dropout, train):
    # WRN-16-1: stage 1's first unit keeps 16 channels, so its shortcut is the raw input
    model = build_model(preset="wrn-16-8", depth=depth, growth=16 * k, dropout=dropout)
    ref = reference_resnets.WideResNet(depth, k, dropout=dropout)
    _copy_weights(model, ref)
    x = torch.randn(3, 3, 16, 16)
    model.train(train), ref.train(train)
    outs = []
    for net in (model, ref):
        torch.manual_seed(3)  # the same dropout masks, drawn in the same order
        outs.append(net(x))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(network_state(model), list(ref.state_dict().values()), atol=1e-5, rtol=1e-4)


def _copy_weights(model, ref):
    """Randomise the reference's norms, then give the model every tensor of it (shapes checked in order)."""
    _randomise_norms(ref)
    mine, theirs = network_state(model), list(ref.state_dict().values())
    assert [t.shape for t in mine] == [t.shape for t in theirs]
    with torch.no_grad():
        for a, b in zip(mine, theirs):
            a.copy_(b)


@pytest.mark.parametrize("preset, train", [("fractalnet-21", True), ("fractalnet-21", False),
                                           ("fractalnet-21-droppath", False)])
def test_fractalnet_equals_a_hand_written_fractalnet(preset, train):
    # evaluation is deterministic with drop-path set: every join averages all its inputs
    model = build_model(preset=preset, growth=4)
    ref = reference_resnets.FractalNet(columns=3, base=4)
    _copy_weights(model, ref)
    x = torch.randn(3, 3, 32, 32)
    model.train(train), ref.train(train)
    torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(network_state(model), list(ref.state_dict().values()), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("train", [True, False])
def test_highway_net_equals_a_hand_written_highway_net(train):
    # a small one (growth 4: widths 4, 10, 16), the same layout; dropout masks drawn in the same order
    model = build_model(preset="highway-19", growth=4, block_layers=[1, 2, 1])
    ref = reference_resnets.HighwayNet(widths=(4, 10, 16), layers=(1, 2, 1))
    _copy_weights(model, ref)
    x = torch.randn(3, 3, 16, 16)
    model.train(train), ref.train(train)
    outs = []
    for net in (model, ref):
        torch.manual_seed(5)
        outs.append(net(x))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)


def test_highway_net_starts_with_biases_zero_and_gate_biases_at_minus_two():
    model = build_model(preset="highway-19", growth=4, block_layers=[1, 1, 1])
    gates = [m.gate.bias for m in model.modules() if hasattr(m, "gate")]
    others = [p for n, p in model.named_parameters() if n.endswith("bias") and "gate" not in n and "classifier" not in n]
    assert len(gates) == 3 and all(torch.equal(b, torch.full_like(b, -2.0)) for b in gates)
    assert len(others) == 3 + 3 + 1 and all(not b.any() for b in others)  # H convs, stage convs, 1x1 conv


def test_fractalnet_dropout_by_block_and_local_drop_path_equal_a_hand_written_fractalnet_in_training():
    # Larsson et al.'s dropout 0, 0.1, 0.2, 0.3, 0.4 by block with local drop-path 0.15: the same draws
    rates = [0.0, 0.1, 0.2, 0.3, 0.4]
    model = build_model(preset="fractalnet-21", growth=4, block_dropout=rates, pattern_options={"drop": 0.15})
    ref = reference_resnets.FractalNet(columns=3, base=4, dropout=rates)
    _copy_weights(model, ref)
    x = torch.randn(3, 3, 32, 32)
    torch.manual_seed(4)
    mine = model.train()(x)
    torch.manual_seed(4)
    torch.testing.assert_close(mine, ref.train()(x, drop=0.15), atol=1e-5, rtol=1e-4)
    assert [{op.p for op in _layer_ops(b)} for b in model.blocks] == [{p} for p in rates]


def test_the_drop_path_preset_has_its_papers_dropout_by_block():
    model = build_model(preset="fractalnet-21-droppath", growth=4)
    assert [{op.p for op in _layer_ops(b)} for b in model.blocks] == [{0.0}, {0.1}, {0.2}, {0.3}, {0.4}]
    assert model.spec.dropout == 0.0  # nothing outside the blocks


def _layer_ops(block):
    return [n.op for n in block.nodes.values() if n.op is not None]


@pytest.mark.parametrize("column", [1, 2, 3])
def test_fractalnet_global_drop_path_runs_one_column_through_the_network(column, monkeypatch):
    model = build_model(preset="fractalnet-21", growth=4, pattern_options={"global_drop": 0.999999})
    ref = reference_resnets.FractalNet(columns=3, base=4)
    _copy_weights(model, ref)
    monkeypatch.setattr(model, "_column", lambda: column)
    x = torch.randn(3, 3, 32, 32)
    torch.manual_seed(0)  # the draw u < global_drop
    torch.testing.assert_close(model.train()(x), ref.train()(x, column=column - 1), atol=1e-5, rtol=1e-4)


def test_fractalnet_local_drop_path_is_seeded_and_off_in_evaluation():
    model = build_model(preset="fractalnet-21-droppath", growth=4)
    plain = build_model(preset="fractalnet-21", growth=4)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 32, 32)
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outs.append(model.train()(x))
    torch.manual_seed(1)
    dense = plain.train()(x)
    assert torch.equal(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    assert not torch.allclose(outs[0], dense)  # some join input was dropped
    plain.load_state_dict(model.state_dict())  # the same running statistics
    torch.testing.assert_close(model.eval()(x), plain.eval()(x))


def test_stochastic_depth_resnet_in_evaluation_equals_a_hand_written_one():
    model = build_model(preset="resnet-sd-110", depth=26, growth=4)  # 12 units, survival 1 - l/12 * 0.5
    ref = reference_resnets.ResNet(26, p_last=0.5, base=4)
    _copy_weights(model, ref)
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(model.eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-4)
    plain = reference_resnets.ResNet(26, base=4)
    plain.load_state_dict(ref.state_dict())
    assert not torch.allclose(model(x), plain.eval()(x))  # the scaling is there


def test_stochastic_depth_skips_unit_l_with_probability_l_over_L_times_p_last():
    model = build_model(preset="resnet-sd-110", depth=20, growth=2).train()  # 9 units; 4 and 7 are strided
    runs = {}
    for block in model.blocks:
        for node in block.nodes.values():
            if node.op is not None and node.op.in_conv is not None:  # a unit's branch, not its ReLU join
                runs[node] = 0
                node.register_forward_hook(lambda m, i, o: runs.__setitem__(m, runs[m] + 1))
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        for _ in range(600):
            model(x)
    units = [1, 2, 3, 5, 6, 8, 9]
    kept = [count / 600 for count in runs.values()]
    for l, share in zip(units, kept):
        assert abs(share - (1 - l / 9 * 0.5)) < 0.07, (l, share)
    torch.manual_seed(3)
    first = model(x)
    torch.manual_seed(3)
    assert torch.equal(first, model(x))  # seeded
    assert torch.equal(model.eval()(x), model(x))  # nothing random in evaluation


def test_highway_block_computes_t_h_plus_one_minus_t_x():
    model = build_model(pattern="highway", block_layers=[2], growth=6).eval()
    block = model.blocks[0]
    x = torch.randn(2, 6, 5, 5)
    expected = x
    for h, join in (("1", "2"), ("3", "4")):
        hx = block.nodes[h].op.tail(block.nodes[h].op.head(expected))
        t = torch.sigmoid(block.nodes[join].join.gate(expected))
        expected = t * hx + (1 - t) * expected
    torch.testing.assert_close(block(x), expected)
    assert block.nodes["2"].join.gate.bias.eq(-2.0).all()  # starts carrying x


def test_dropout_follows_every_conv_including_transitions():
    model = build_model(pattern="dense", block_layers=[2, 2], growth=4, dropout=0.2)
    assert isinstance(model.transitions[0].drop, nn.Dropout) and model.transitions[0].drop.p == 0.2
    names = [name for name, _ in model.transitions[0].named_children()]
    assert names == ["norm", "relu", "conv", "drop", "pool"]  # dropout on the conv's output
    assert not hasattr(build_model(pattern="dense", block_layers=[2, 2], growth=4, dropout=0.0).transitions[0], "drop")


@pytest.mark.parametrize("preset, depth", [("preact-resnet-164", 20), ("resnet-110", 14), ("wrn-16-4-dropout", 16)])
def test_memory_efficient_resnets_give_identical_outputs_and_gradients(preset, depth):
    default = build_model(make_arch(preset=preset, depth=depth, dropout=0.1))
    efficient = copy.deepcopy(default).set_memory_efficient(True)
    x = torch.randn(4, 3, 16, 16)
    outs = []
    for model in (default, efficient):
        torch.manual_seed(7)
        out = model.train()(x)
        out.square().mean().backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    for (name, a), b in zip(default.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)


def _saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of non-parameter tensors autograd saves for backward in one training step."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if not isinstance(t, torch.nn.Parameter):
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(x).sum().backward()
    return total


def test_memory_efficient_bottleneck_recomputes_its_second_norm_relu():
    # Without the tail recomputation each bottleneck layer keeps its 4k-channel BN2 output (ratio 0.81 here).
    default = build_model(make_arch(preset="densenet-bc-100-12", depth=16))
    efficient = copy.deepcopy(default).set_memory_efficient(True)
    x = torch.randn(4, 3, 16, 16)
    assert _saved_activation_bytes(efficient, x) < 0.6 * _saved_activation_bytes(default, x)


# The wiring language: aggregation kinds and stochastic edges (docs/design.md, "The wiring language").
from connectome.aggregations import AGGREGATIONS, Aggregation  # noqa: E402
from connectome.errors import SpecError  # noqa: E402
from connectome.executor import Block  # noqa: E402
from connectome.joins import JOINS, make_join  # noqa: E402
from wiring_graphs import KINDS, block, join_graph, network, wiring_graph  # noqa: E402


def _block_module(graph, memory_efficient=False):
    torch.manual_seed(0)
    module = Block(block(graph), bn_size=4, dropout=0.0, memory_efficient=memory_efficient)
    for p in module.parameters():  # away from the initial values, so formulas see every weight
        p.data.add_(0.1 * torch.randn_like(p))
    return module


def _join_formula(agg, join, x, h):
    """The kind's formula, written out with the join's own parameters."""
    if agg == "concat":
        return torch.cat([x, h], 1)
    if agg == "sum":
        return x + h
    if agg == "mean":
        return (x + h) / 2
    if agg == "weighted":
        w = torch.sigmoid(join.weight) if join.positive else join.weight
        return w[0] * x + w[1] * h
    if agg == "gated":
        t = torch.sigmoid(nn.functional.conv2d(x, join.gate.weight, join.gate.bias, padding=join.gate.padding))
        return t * h + (1 - t) * x
    return DEPTH_FORMULAS[agg](join, x, h)


def _rms(t):
    return t * torch.rsqrt(t.pow(2).mean(1, keepdim=True) + 1e-6)  # over channels of (B, C, H, W)


def _mudd(join, x, h):
    """w = GELU(RMSNorm(h) W1) W2 + a per pixel (h: the current state, the higher source id)."""
    w = nn.functional.gelu(torch.einsum("bchw,kc->bhwk", _rms(h), join.w1.weight)) @ join.w2.weight.T + join.prior
    return w[..., 0].unsqueeze(1) * x + w[..., 1].unsqueeze(1) * h


def _depth_attention(join, x, h):
    scores = torch.stack([torch.einsum("bchw,c->bhw", _rms(t), join.query) for t in (x, h)], -1)
    alpha = scores.softmax(-1)
    return alpha[..., 0].unsqueeze(1) * x + alpha[..., 1].unsqueeze(1) * h


def _laurel(join, x, h):
    """alpha h + beta (x + B A x), x the carry (the lower source id)."""
    if join.up is not None:
        x = x + torch.einsum("bchw,rc,dr->bdhw", x, join.down.weight, join.up.weight)
    return h + x if join.alpha is None else join.alpha * h + join.beta * x


DEPTH_FORMULAS = {"mudd": _mudd, "depth-attention": _depth_attention, "laurel": _laurel}


@pytest.mark.parametrize("name, agg, attrs", KINDS, ids=[k[0] for k in KINDS])
def test_each_aggregation_kind_equals_its_formula_in_values_and_gradients(name, agg, attrs):
    module = _block_module(join_graph(agg, **attrs)).train()
    if agg in DEPTH_FORMULAS:  # their zero-initialised parts (W2, the query, B) would hide a wrong formula
        with torch.no_grad():
            for p in module.nodes["2"].join.parameters():
                p.normal_()
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    out = module(x)
    layer = module.nodes["1"].op
    expected = _join_formula(agg, module.nodes["2"].join, x, layer.tail(layer.head(x)))
    torch.testing.assert_close(out, expected)
    params = [x, *module.parameters()]
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), params)
    want = torch.autograd.grad((expected * weights).sum(), params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("weights, expected", [("ones", [1.0, 1.0]), ("nearest", [0.0, 1.0]),
                                                ("uniform", [0.5, 0.5]), ("sigmoid", [0.0, 0.0])])
def test_weighted_initialisations(weights, expected):
    model = ConnectomeNet(network(block(join_graph("weighted", weights=weights))))
    assert model.blocks[0].nodes["2"].join.weight.tolist() == expected


def test_gate_bias_and_kernel_are_the_nodes_options():
    model = ConnectomeNet(network(block(join_graph("gated", gate_kernel=1, gate_bias=-3.0))))
    gate = model.blocks[0].nodes["2"].join.gate
    assert gate.kernel_size == (1, 1) and torch.all(gate.bias == -3.0)


def test_gated_carry_is_the_marked_in_edge():
    module = _block_module(join_graph("gated", edge_attrs={(1, 2): {"carry": True}}))
    x = torch.randn(2, 4, 5, 5)
    layer, join = module.nodes["1"].op, module.nodes["2"].join
    h = layer.tail(layer.head(x))
    torch.testing.assert_close(module(x), _join_formula("gated", join, h, x))  # carry h, transform x


def test_unknown_join_module_names_the_registered_ones():
    with pytest.raises(SpecError, match=f"has no module.*with a module: {', '.join(sorted(JOINS))}"):
        make_join("max", n_inputs=2, width=4, carry=0, options={})


def test_evaluation_is_deterministic_and_draws_nothing():
    model = ConnectomeNet(network(block(wiring_graph()), block(wiring_graph()))).eval()
    x = torch.randn(2, 3, 8, 8)
    state = torch.get_rng_state()
    first = model(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(model(x), first)


def _outputs(module, x, n, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        return [module(x) for _ in range(n)]


def test_edge_drop_on_a_sum_drops_at_its_rate_and_scales_in_evaluation():
    module = _block_module(join_graph("sum", edge_attrs={(1, 2): {"drop": 0.3}})).train()
    module.nodes["1"].op.eval()  # fixed BN statistics: the branch's value is the same every batch
    x = torch.randn(2, 4, 5, 5)
    outs = _outputs(module, x, 400)
    dropped = sum(torch.equal(o, x) for o in outs) / len(outs)
    assert 0.24 <= dropped <= 0.36  # p = 0.3; 400 draws: sd 0.023
    h = outs[[torch.equal(o, x) for o in outs].index(False)] - x
    module.eval()
    torch.testing.assert_close(module(x), x + 0.7 * h)


def test_mean_local_drop_path_keeps_at_least_one_input_and_renormalises():
    edges = {(0, 2): {"drop": 0.5}, (1, 2): {"drop": 0.5}}
    module = _block_module(join_graph("mean", edge_attrs=edges)).train()
    module.nodes["1"].op.eval()
    x = torch.randn(2, 4, 5, 5)
    layer = module.nodes["1"].op
    with torch.no_grad():
        h = layer.tail(layer.head(x))
    outs = _outputs(module, x, 600)
    kinds = ["x" if torch.equal(o, x) else "h" if torch.allclose(o, h) else "both" for o in outs]
    assert all(k == "both" and torch.allclose(o, (x + h) / 2) or k != "both" for o, k in zip(outs, kinds))
    # only x: x kept and h dropped (1/4), or both dropped and x drawn to survive (1/8): 3/8
    assert 0.31 <= kinds.count("x") / 600 <= 0.44
    assert 0.19 <= kinds.count("both") / 600 <= 0.31
    module.eval()
    torch.testing.assert_close(module(x), (x + h) / 2)


def test_stochastic_depth_on_residual_running_sums():
    """Pattern `residual` with node drops: x + b1 f1(x) + b2 f2(x + b1 f1(x)); evaluation scales by 1 - p."""
    from connectome.patterns import BlockContext, block_graph

    g = block_graph("residual", BlockContext(n_layers=2, in_channels=4, growth=4, op="conv3x3", index=0))
    g.nodes[1]["drop"], g.nodes[2]["drop"] = 0.5, 0.2
    module = _block_module(g).eval()
    f1, f2 = (module.nodes[str(v)].op for v in (1, 2))
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        s1 = x + 0.5 * f1.tail(f1.head(x))
        expected = s1 + 0.8 * f2.tail(f2.head(s1))
        torch.testing.assert_close(module(x), expected)
        module.train()
        f1.eval(), f2.eval()
        a1 = f1.tail(f1.head(x))
        possible = [x, x + a1, x + f2.tail(f2.head(x)), x + a1 + f2.tail(f2.head(x + a1))]
        outs = _outputs(module, x, 300)
    seen = [next(i for i, p in enumerate(possible) if torch.allclose(o, p)) for o in outs]
    assert 0.4 <= sum(i in (0, 2) for i in seen) / 300 <= 0.6  # layer 1 dropped with p = 0.5
    assert 0.12 <= sum(i in (0, 1) for i in seen) / 300 <= 0.28  # layer 2 dropped with p = 0.2


def test_global_drop_path_keeps_one_column_for_the_whole_network():
    g = wiring_graph()
    g.graph["global_drop"] = 0.999
    model = ConnectomeNet(network(block(g), block(g))).train()
    seen = []
    for seed in range(40):
        torch.manual_seed(seed)
        draw = float(torch.rand(()))
        seen.append(model.columns[int(torch.randint(len(model.columns), ()))] if draw < 0.999 else None)
    assert model.columns == [1, 2] and 10 <= seen.count(1) <= 30 and None not in seen
    kept = {}
    for b in model.blocks:  # record which inputs every mean join keeps in this batch
        b.nodes["4"].join.register_forward_pre_hook(lambda m, args: kept.setdefault(id(m), []).append(len(args[0])))
    x = torch.randn(2, 3, 8, 8)
    for seed in range(20):
        torch.manual_seed(seed)
        model(x)
    assert all(n == [1] * 20 for n in kept.values())  # global mode: one column at each join


def test_memory_efficient_mode_gives_identical_outputs_and_gradients_with_every_kind():
    spec = network(block(wiring_graph()), block(wiring_graph()))
    plain, efficient = ConnectomeNet(spec), ConnectomeNet(spec, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 8, 8)
    results = []
    for model in (plain, efficient):
        torch.manual_seed(3)
        out = model(x)
        out.square().sum().backward()
        results.append((out, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_memory_efficient_mode_refuses_a_kind_that_does_not_support_it(monkeypatch):
    monkeypatch.setitem(AGGREGATIONS, "mean", Aggregation("mean", AGGREGATIONS["mean"].cost, memory_efficient=False))
    spec = network(block(join_graph("mean")))
    with pytest.raises(SpecError, match="memory-efficient mode does not support aggregation 'mean' .block 1, node 2"):
        ConnectomeNet(spec, memory_efficient=True)
    with pytest.raises(SpecError, match="memory-efficient"):
        ConnectomeNet(spec).set_memory_efficient(True)
