"""Complexity from the spec: Table 1 (v1 2016; DenseNet-BC: CVPR 2017), torchvision's counts, FLOPs, budgets."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import reference_resnets

from connectome import PATTERNS, build_model, build_spec, make_arch, match_budget
from connectome.complexity import DEFAULT_INPUT, complexity
from connectome.costs import HEAD_KINDS, OP_KINDS, STEM_KINDS, TRANSITION_KINDS
from connectome.errors import ConfigError
from connectome.ops import Transition  # importing connectome.ops registers each kind's module


def paper_densenet_params(depth, k, bc, classes=10, c_in=3):
    """Params of the paper's CIFAR DenseNet(-BC), counted from its description by hand."""
    n = (depth - 4) // (6 if bc else 3)
    c = 2 * k if bc else 16
    total = c_in * c * 9  # stem 3x3 conv
    for b in range(3):
        for layer in range(n):
            cin = c + layer * k
            if bc:  # BN, 1x1 conv to 4k, BN, 3x3 conv to k
                total += 2 * cin + cin * 4 * k + 2 * 4 * k + 4 * k * k * 9
            else:  # BN, 3x3 conv to k
                total += 2 * cin + cin * k * 9
        c += n * k
        if b < 2:  # transition: BN, 1x1 conv with compression
            out = c // 2 if bc else c
            total += 2 * c + c * out
            c = out
    return total + 2 * c + c * classes + classes  # BN, linear


TABLE_1 = [  # (depth, k, bc, "Params" in millions: v1's Table 1; the BC rows: CVPR 2017 Table 2)
    (40, 12, False, 1.0), (100, 12, False, 7.0), (100, 24, False, 27.2),
    (100, 12, True, 0.8), (250, 24, True, 15.3), (190, 40, True, 25.6),
]


@pytest.mark.parametrize("depth, k, bc, millions", TABLE_1)
def test_table_1_params(depth, k, bc, millions):
    arch = make_arch(depth=depth, growth=k, bottleneck=bc, compression=0.5 if bc else 1.0)
    params = complexity(build_spec(arch)).params
    assert params == paper_densenet_params(depth, k, bc)
    assert round(params / 1e6, 1) == millions


@pytest.mark.parametrize("name", ["densenet121", "densenet169", "densenet201"])
def test_imagenet_presets_match_torchvision(name):
    expected = sum(p.numel() for p in getattr(torchvision.models, name)().parameters())
    assert complexity(build_spec(make_arch(preset=name))).params == expected
    if name == "densenet121":
        assert expected == 7_978_856


def _small(pattern, **kw):
    kw.setdefault("block_layers", [4, 2] if pattern == "fractal" else [3, 4])  # fractal: 2^(C-1) layers
    kw.setdefault("growth", 6 if pattern != "residual" else 8)
    opts = {"random": {"model": "er", "p": 0.5, "seed": 1}}.get(pattern, {})
    return make_arch(pattern=pattern, pattern_options=opts, **kw)


@pytest.fixture
def papers_transition_order(monkeypatch):
    """Transitions in the paper's order (conv, then pooling): the count the spec reports.

    The executor pools first where that is exact, doing a quarter of the transition conv's work
    (tests/test_ops.py); the spec keeps the conventional count that papers and torchvision report.
    """
    def forward(self, x):
        h = self.conv(self.relu(self.norm(x)))
        return self.pool(self.drop(h) if hasattr(self, "drop") else h)

    monkeypatch.setattr(Transition, "forward", forward)


def _hooked_flops(model, size, forward=None):
    """Multiply-adds of convs and linears, counted from a real forward pass (model's own by default)."""
    flops = []

    def conv_hook(m, inp, out):
        flops.append(out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])

    def linear_hook(m, inp, out):  # at every position: a join's linears per pixel, ConvNeXt's MLP channels-last
        flops.append(out[0].numel() * m.in_features)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear_hook)
    model.eval()
    (forward or model)(torch.zeros(1, *size))
    return sum(flops)


@pytest.mark.parametrize("pattern", sorted(set(PATTERNS) - {"file"}))
@pytest.mark.parametrize("bottleneck", [False, True])
def test_spec_complexity_equals_the_built_model(pattern, bottleneck, papers_transition_order):
    arch = _small(pattern, bottleneck=bottleneck)
    spec, model = build_spec(arch), build_model(arch)
    cx = complexity(spec, (3, 16, 16))
    assert cx.params == sum(p.numel() for p in model.parameters())
    assert cx.flops == _hooked_flops(model, (3, 16, 16)) + _join_flops(model, (3, 16, 16))


def _join_flops(model, size):
    """The elementwise multiply-adds of the mean and gated joins (one per output element) in a forward pass."""
    from connectome.joins import Gated, Mean

    flops = []
    for m in model.modules():
        if isinstance(m, (Mean, Gated)):
            m.register_forward_hook(lambda m, inp, out: flops.append(out[0].numel()))
    model.eval()(torch.zeros(1, *size))
    return sum(flops)


def test_imagenet_flops_match_a_forward_pass(papers_transition_order):
    spec = build_spec(make_arch(preset="densenet121", block_layers=[2, 2, 2, 2]))
    from connectome.executor import ConnectomeNet

    assert complexity(spec, (3, 64, 64)).flops == _hooked_flops(ConnectomeNet(spec), (3, 64, 64))


def test_memory_efficient_stores_fewer_activations():
    spec = build_spec(make_arch(preset="densenet-100-12"))
    assert complexity(spec, memory_efficient=True).acts < complexity(spec).acts / 2


@pytest.mark.parametrize("pattern", ["dense", "partial", "residual", "plain", "sparse"])
def test_budget_matching_lands_near_the_target(pattern):
    target = 300_000
    arch = match_budget(make_arch(pattern=pattern, depth=22), target)
    params = complexity(build_spec(arch)).params
    worse = [complexity(build_spec(arch.model_copy(update={"growth": arch.growth + d}))).params
             for d in (-1, 1)]
    assert all(abs(params - target) <= abs(w - target) for w in worse)
    assert abs(params - target) / target < 0.1


def _closest_by_scan(arch, target, max_growth):
    """Budget matching by brute force: every growth rate from 1 to max_growth."""
    counts = {k: complexity(build_spec(arch.model_copy(update={"growth": k}))).params
              for k in range(1, max_growth + 1)}
    return min(counts, key=lambda k: (abs(counts[k] - target), k))


@pytest.mark.parametrize("pattern, start", [("dense", 12), ("partial", 1), ("residual", 40), ("sparse", 7)])
@pytest.mark.parametrize("target", [1, 20_000, 45_000, 77_777])
def test_budget_matching_equals_a_scan_of_every_growth(pattern, start, target):
    # The search starts at the arch's own growth and brackets up or down; it must land where a
    # scan of every growth rate does, from any start (ties go to the smaller growth).
    arch = make_arch(pattern=pattern, depth=10, growth=start)
    expected = _closest_by_scan(arch, target, max_growth=40)
    assert match_budget(arch, target, max_growth=40).growth == expected


def test_budget_matching_near_the_start_builds_few_specs(monkeypatch):
    # A planner matches every trial of a study (213 in studies/random_wiring.yaml): starting at
    # the arch's growth, a nearby match costs a handful of spec builds, each done once.
    import connectome.builder

    built = []
    real = connectome.builder.build_spec
    monkeypatch.setattr(connectome.builder, "build_spec", lambda arch: built.append(arch.growth) or real(arch))
    arch = make_arch(depth=22, growth=12)
    target = complexity(real(arch.model_copy(update={"growth": 13}))).params
    assert match_budget(arch, target).growth == 13
    assert len(built) == len(set(built)) <= 6, built


def test_budget_out_of_reach_is_a_config_error():
    with pytest.raises(ConfigError, match="even growth 40 stays under 10,000,000 params"):
        match_budget(make_arch(depth=10, growth=12), 10_000_000, max_growth=40)


@pytest.mark.parametrize("pattern, options", [("prenorm", {}), ("mhc", {"streams": 4})])
def test_a_decoder_budget_lands_on_the_closest_width_its_heads_allow(pattern, options):
    # A decoder's width is a multiple of twice its heads (rotary pairs): the match scans only those.
    arch = make_arch(family="decoder", pattern=pattern, pattern_options=options, growth=24, heads=3, sublayers=4,
                     context=8)
    target = 60_000
    counts = {w: complexity(build_spec(arch.model_copy(update={"growth": w}))).params for w in range(6, 121, 6)}
    expected = min(counts, key=lambda w: (abs(counts[w] - target), w))
    assert match_budget(arch, target, max_growth=120).growth == expected


def _norm_params(model) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())


@pytest.mark.parametrize("preset, millions, reference", [
    ("preact-resnet-164", 1.7, reference_resnets.PreActResNet(164)),
    ("resnet-110", 1.7, reference_resnets.ResNet(110)),
])
def test_resnet_presets_have_table_1_params(preset, millions, reference):
    params = complexity(build_spec(make_arch(preset=preset))).params
    assert params == sum(p.numel() for p in reference.parameters())
    assert round(params / 1e6, 1) == millions


@pytest.mark.parametrize("preset, depth, k, millions", [
    ("wrn-16-8", 16, 8, 11.0), ("wrn-28-10", 28, 10, 36.5), ("wrn-16-4-dropout", 16, 4, 2.7),
])
def test_wide_resnet_presets_have_table_1_params(preset, depth, k, millions):
    params = complexity(build_spec(make_arch(preset=preset))).params
    assert params == sum(p.numel() for p in reference_resnets.WideResNet(depth, k).parameters())
    assert round(params / 1e6, 1) == millions


def test_fractalnet_params_as_its_description_counts_them():
    """33,724,618 (conv, BN and classifier), as reimplementations of Larsson et al.'s description
    count; Table 1 (and the FractalNet paper) say 38.6M, which that description does not give."""
    for preset in ("fractalnet-21", "fractalnet-21-droppath"):
        params = complexity(build_spec(make_arch(preset=preset))).params
        assert params == sum(p.numel() for p in reference_resnets.FractalNet().parameters()) == 33_724_618


def test_highway_net_has_its_papers_params():
    """Srivastava et al. (2015) Table 1: Highway B, 19 layers, ~2.3M; their Caffe model counts 2,256,838."""
    params = complexity(build_spec(make_arch(preset="highway-19"))).params
    assert params == sum(p.numel() for p in reference_resnets.HighwayNet().parameters()) == 2_256_838
    assert round(params / 1e6, 1) == 2.3 and make_arch(preset="highway-19").depth == 19


@pytest.mark.parametrize("preset, depth, params", [("resnet-sd-110", 110, 1_727_962), ("resnet-sd-1202", 1202, 19_421_274)])
def test_stochastic_depth_resnets_count_he_et_al_s_resnets(preset, depth, params):
    """Stochastic depth adds no parameter: 1.7M as Table 1 for 110 layers; 19.4M for 1202 layers,
    He et al. (2015)'s ResNet-1202 count (Table 1's 10.2M is not that network's)."""
    spec = build_spec(make_arch(preset=preset))
    assert complexity(spec).params == params == sum(p.numel() for p in reference_resnets.ResNet(depth).parameters())
    drops = [n.drop for b in spec.blocks for n in b.nodes if n.drop]
    assert max(drops) == 0.5 and min(drops) == pytest.approx(0.5 / ((depth - 2) // 2))


def test_preact_resnet_1001_params_as_he_et_al_count_them():
    """10.33M with BN's scale and shift; Table 1's 10.2M (from He et al. 2016) matches the
    conv and linear weights alone (10.18M), which is how the 164-layer net's 1.7M also rounds."""
    model = build_model(preset="preact-resnet-1001")
    params = complexity(build_spec(make_arch(preset="preact-resnet-1001"))).params
    assert params == sum(p.numel() for p in model.parameters())
    assert round(params / 1e6, 2) == 10.33
    assert round((params - _norm_params(model)) / 1e6, 1) == 10.2


def test_memory_efficient_bottleneck_stores_only_its_conv_outputs():
    # Both BN-ReLUs are recomputed in backward: the 1x1 output (4k) and the 3x3 output (k) remain.
    cx = OP_KINDS.formula("bottleneck")(40, 12, 4, 8, memory_efficient=True)
    assert cx.acts == (4 * 12 + 12) * 8 * 8


CIN, COUT, BN_SIZE, HW = 16, 32, 2, 8
# Per part: its registry, a kind's module built CIN -> COUT, and its formula's (count, output side) on HW x HW maps.
PARTS = {
    "op": (OP_KINDS, lambda m: m(CIN, COUT, bn_size=BN_SIZE, dropout=0.0), lambda f: (f(CIN, COUT, BN_SIZE, HW), HW)),
    "stem": (STEM_KINDS, lambda m: m(CIN, COUT), lambda f: f(CIN, COUT, HW)),
    "transition": (TRANSITION_KINDS, lambda m: m(CIN, COUT), lambda f: f(CIN, COUT, HW)),
    "head": (HEAD_KINDS, lambda m: m(CIN, COUT), lambda f: (f(CIN, COUT, HW), None)),
}


@pytest.mark.parametrize("part", PARTS)
def test_every_kind_has_a_cost_formula_and_a_module(part):
    kinds = PARTS[part][0]
    assert kinds.costs and set(kinds.modules) == set(kinds.costs)
    if part == "stem":  # the side complexity() assumes when no input size is given
        assert set(DEFAULT_INPUT) == set(kinds.costs)


# The image kinds; the decoder's kinds (layout "tokens") are counted in tests/test_decoder.py.
@pytest.mark.parametrize("part, name", [(part, name) for part, (kinds, *_) in PARTS.items() for name in kinds.costs
                                        if kinds.layouts[name] == "maps"])
def test_each_kinds_formula_counts_its_built_module(part, name, papers_transition_order):
    kinds, build, count = PARTS[part]
    module = build(kinds.modules[name])
    cx, side = count(kinds.costs[name])
    forward = (lambda x: module.tail(module.head(x))) if part == "op" else module
    assert cx.params == sum(p.numel() for p in module.parameters())
    assert cx.flops == _hooked_flops(module, (CIN, HW, HW), forward)
    if side is not None:
        assert forward(torch.zeros(1, CIN, HW, HW)).shape[-1] == side


def test_specs_and_their_complexity_import_no_torch():
    # Planning (spec, params, multiply-adds, activations) must not pay for torch; build_model imports it.
    repo = Path(__file__).resolve().parents[1]
    code = ("import sys\n"
            "import connectome.architecture, connectome.canonical, connectome.patterns, connectome.topology\n"
            "from connectome.builder import build_spec\nfrom connectome.complexity import complexity\n"
            "from connectome.architecture import make_arch\n"
            "for preset in ('densenet-40-12', 'densenet121', 'preact-resnet-164', 'resnet-110'):\n"
            "    assert complexity(build_spec(make_arch(preset=preset))).params > 0\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=repo,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# The wiring language: every aggregation kind counts its learned parameters and its work.
from connectome.aggregations import AGGREGATIONS  # noqa: E402
from connectome.errors import SpecError  # noqa: E402
from connectome.joins import JOINS  # noqa: E402
from wiring_graphs import KINDS, block, join_graph, network, wiring_graph  # noqa: E402


def test_every_aggregation_kind_has_a_module():
    assert set(JOINS) == set(AGGREGATIONS)


@pytest.mark.parametrize("name, agg, attrs", KINDS, ids=[k[0] for k in KINDS])
def test_aggregation_kinds_count_the_built_models_params(name, agg, attrs):
    from connectome.executor import ConnectomeNet

    spec = network(block(join_graph(agg, width=6, **attrs)))
    model = ConnectomeNet(spec)
    cx = complexity(spec, (3, 8, 8))
    assert cx.params == sum(p.numel() for p in model.parameters())
    join_params = sum(p.numel() for p in model.blocks[0].nodes["2"].join.parameters())
    hidden = round(attrs.get("expand", 1.0) * 2)
    form, rank = attrs.get("form", ""), attrs.get("rank", 4)
    assert join_params == {"weighted": 2, "gated": 6 * 6 * attrs.get("gate_kernel", 3) ** 2 + 6,
                           "mudd": 6 * hidden + hidden * 2 + 2, "depth-attention": 6,
                           "laurel": 2 * ("rw" in form) + 2 * rank * 6 * ("lr" in form)}.get(agg, 0)


@pytest.mark.parametrize("name, agg, attrs", KINDS, ids=[k[0] for k in KINDS])
def test_aggregation_kinds_add_their_multiply_adds(name, agg, attrs):
    from connectome.executor import ConnectomeNet

    spec = network(block(join_graph(agg, width=6, **attrs)))
    laurel = 2 * ("rw" in attrs.get("form", ""))  # alpha h + beta x; B A x is linears, counted by the hooks
    per_channel = {"mean": 1, "weighted": 2, "gated": 1, "mudd": 2, "depth-attention": 4, "laurel": laurel}
    elementwise = per_channel.get(agg, 0) * 6 * 8 * 8
    # convs and linears (the gate conv included) counted in a forward pass, plus the kind's elementwise work
    assert complexity(spec, (3, 8, 8)).flops == _hooked_flops(ConnectomeNet(spec), (3, 8, 8)) + elementwise


def test_a_network_with_every_wiring_attribute_counts_its_params():
    from connectome.executor import ConnectomeNet

    spec = network(block(wiring_graph()), block(wiring_graph()))
    assert complexity(spec).params == sum(p.numel() for p in ConnectomeNet(spec).parameters())


@pytest.mark.parametrize("side", [-1, 0, 2, 3])
def test_an_input_too_small_for_the_downsampling_is_an_error(side):
    spec = build_spec(make_arch(preset="densenet-40-12"))  # three blocks: 32, 16, 8 at a 32 input
    with pytest.raises(SpecError, match="input size|too small"):
        complexity(spec, (3, side, side))
    assert complexity(spec, (3, 4, 4)).params == complexity(spec).params  # 4, 2, 1: the smallest that runs
