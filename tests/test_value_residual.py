"""Value residual learning (ResFormer) as a pattern with ports: the paper's equations, its learned form, its hash."""
import pytest
import torch

from connectome import build_model, build_spec, make_arch
from reference_decoder import rms_norm
from reference_depth_wiring import attention, swiglu

WIDTH, HEADS, T, N = 16, 2, 8, 6


def _arch(pattern="value-residual", **options):
    return make_arch(family="decoder", pattern=pattern, growth=WIDTH, heads=HEADS, context=T, sublayers=N,
                     pattern_options=options)


def _scrambled(arch):
    model = build_model(arch)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.copy_(torch.rand_like(p) + 0.5)
    return model


def _reference(model, x, lambdas):
    """h_0 = embedding; attention n uses V'_n = lambda_1 V_1 + lambda_2 V_n (n > 1); prenorm residual stream."""
    nodes = model.blocks[0].nodes
    h, first = model.stem(x), None
    for i in range(N // 2):
        a, f = nodes[str(2 * i + 1)].op, nodes[str(2 * i + 2)].op
        mix = None if first is None else (lambda v, i=i: lambdas[i][0] * first + lambdas[i][1] * v)
        y, values = attention(h, h, h, [a.norm.weight] * 3, a.qkv.weight, a.proj.weight, HEADS, mix)
        first = values if first is None else first
        h = h + y
        h = h + swiglu(h, f.norm.weight, f.gate.weight, f.up.weight, f.down.weight)
    return model.head(h)


@pytest.mark.parametrize("learned", [False, True])
def test_value_residual_follows_the_paper_values_and_gradients(learned):
    model = _scrambled(_arch(learned=learned))
    joins = [model.blocks[0].nodes[str(v)].port_joins.values for v in (3, 5)]
    if learned:
        with torch.no_grad():
            for j in joins:
                j.weight.normal_()
        lambdas = [None] + [(j.weight[1], j.weight[0]) for j in joins]  # port order: own V_n, then V_1
    else:
        lambdas = [None] + [(0.5, 0.5)] * 2
    x = torch.randint(0, 256, (2, T))
    out, expected = model(x), _reference(model, x, lambdas)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    first = model.blocks[0].nodes["1"].op.qkv.weight
    params = [first] + ([j.weight for j in joins] if learned else [])
    for g, e in zip(torch.autograd.grad(out.square().mean(), params),
                    torch.autograd.grad(expected.square().mean(), params)):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


def test_learned_lambdas_start_at_one_half_and_are_joins():
    from connectome.joins import Join

    model = build_model(_arch(learned=True))
    joins = [m for name, m in model.named_modules() if name.endswith("port_joins.values")]
    assert len(joins) == 2 and all(isinstance(j, Join) and torch.equal(j.weight, torch.full((2,), 0.5)) for j in joins)


def test_value_residual_wiring_is_told_apart():
    hashes = {build_spec(a).canonical_hash for a in (_arch("prenorm"), _arch(), _arch(learned=True))}
    assert len(hashes) == 3


def test_value_residual_rejects_a_non_boolean_learned():
    from connectome.errors import SpecError

    with pytest.raises(SpecError, match="learned must be true or false"):
        build_spec(_arch(learned="yes"))


def test_the_example_graph_file_is_the_pattern():
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples/graphs/decoder/value_residual.json"
    kw = dict(family="decoder", growth=64, heads=4, sublayers=4)
    from_file = build_spec(make_arch(pattern="file", pattern_options={"path": str(path)}, **kw))
    assert from_file.canonical_hash == build_spec(make_arch(pattern="value-residual", **kw)).canonical_hash
