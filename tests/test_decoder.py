"""The decoder family: a hand-written reference, causality of every pattern, DenseFormer's equations, costs."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from connectome import build_model, build_spec, make_arch
from connectome.complexity import complexity
from connectome.errors import ConfigError, SpecError
from connectome.patterns import DECODER_PATTERNS, PATTERNS
from connectome.spec import NetworkSpec
from reference_decoder import ReferenceDecoder

WIDTH, HEADS, T = 32, 4, 12
# Every decoder pattern, with the options that change its graph (denseformer: dilation and period).
VARIANTS = [(p, {}) for p in sorted(set(DECODER_PATTERNS) - {"file"})] + [
    ("partial", {"m": 3}), ("denseformer", {"pattern_options": {"dilation": 2, "period": 2}, "sublayers": 10})]


def _arch(pattern, **kw):
    kw.setdefault("tie_embeddings", pattern != "dense-concat")
    return make_arch(family="decoder", pattern=pattern, growth=WIDTH, heads=HEADS, sublayers=kw.pop("sublayers", 6),
                     context=T, **kw)


def _scramble(model):
    """Random norm gains and connection weights, so no parameter sits at a value that hides a wiring error."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.rand_like(p) + 0.5)
    return model


def _tokens(b=3, t=T):
    return torch.randint(0, 256, (b, t))


@pytest.mark.parametrize("tied", [True, False])
def test_prenorm_equals_a_hand_written_decoder_outputs_and_gradients(tied):
    model = _scramble(build_model(_arch("prenorm", tie_embeddings=tied, mlp_ratio=2.0)))
    ref = ReferenceDecoder(256, WIDTH, HEADS, 2 * WIDTH, 3, tied).load_from(model)
    x, y = _tokens(), _tokens()
    out, expected = model(x), ref(x)
    assert out.shape == (3, T, 256)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-4)
    F.cross_entropy(out.flatten(0, 1), y.flatten()).backward()
    F.cross_entropy(expected.flatten(0, 1), y.flatten()).backward()
    nodes = model.blocks[0].nodes
    torch.testing.assert_close(model.stem.embedding.weight.grad, ref.embed.weight.grad, atol=1e-6, rtol=1e-4)
    for i, block in enumerate(ref.blocks):
        attn, mlp = nodes[str(2 * i + 1)].op, nodes[str(2 * i + 2)].op
        qkv = torch.cat([block.wq.weight.grad, block.wk.weight.grad, block.wv.weight.grad])
        pairs = [(attn.qkv.weight, qkv), (attn.proj.weight, block.wo.weight.grad),
                 (attn.norm.weight, block.norm1.grad), (mlp.norm.weight, block.norm2.grad),
                 (mlp.gate.weight, block.w_gate.weight.grad), (mlp.up.weight, block.w_up.weight.grad),
                 (mlp.down.weight, block.w_down.weight.grad)]
        for param, grad in pairs:
            torch.testing.assert_close(param.grad, grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(model.head.norm.weight.grad, ref.norm.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("pattern, kw", VARIANTS, ids=lambda v: str(v))
def test_every_pattern_is_causal(pattern, kw):
    model = _scramble(build_model(_arch(pattern, **kw))).eval()
    x = _tokens(2)
    for t in (0, 5, T - 1):
        changed = x.clone()
        changed[:, t] = (x[:, t] + 1) % 256
        with torch.no_grad():
            a, b = model(x), model(changed)
        assert torch.equal(a[:, :t], b[:, :t]), f"{pattern}: changing token {t} changed earlier logits"
        assert not torch.allclose(a[:, t], b[:, t]), f"{pattern}: token {t} does not reach its own logits"


def _sublayers(model):
    """The attention and SwiGLU modules in node order."""
    nodes = model.blocks[0].nodes
    return [nodes[k].op for k in sorted(nodes, key=int) if nodes[k].op is not None]


def _copy_body(source, target):
    with torch.no_grad():
        target.stem.load_state_dict(source.stem.state_dict())
        target.head.load_state_dict(source.head.state_dict())
        for s, t in zip(_sublayers(source), _sublayers(target), strict=True):
            t.load_state_dict(s.state_dict())


@pytest.mark.parametrize("options", [{}, {"dilation": 2}, {"period": 2}, {"dilation": 3, "period": 2}])
def test_denseformer_equals_prenorm_at_initialisation(options):
    prenorm = _scramble(build_model(_arch("prenorm", sublayers=8)))
    dense = build_model(_arch("denseformer", sublayers=8, pattern_options=options))
    _copy_body(prenorm, dense)
    x = _tokens()
    torch.testing.assert_close(dense(x), prenorm(x), atol=1e-6, rtol=1e-5)


def _weighted_joins(model):
    nodes = model.blocks[0].nodes
    return [nodes[k].join for k in sorted(nodes, key=int) if nodes[k].agg == "weighted"]


@pytest.mark.parametrize("dilation", [1, 2])
def test_denseformer_follows_its_equations_with_random_weights(dilation):
    """X_0 = embedding; Y_i = X_{i-1} + a_i + f_i; X_i = sum_j alpha_ij Y_j over j = i, i - k, ... >= 0."""
    model = _scramble(build_model(_arch("denseformer", sublayers=8, pattern_options={"dilation": dilation})))
    joins = _weighted_joins(model)
    with torch.no_grad():
        for join in joins:
            join.weight.normal_()
    x = _tokens()
    ops = _sublayers(model)
    with torch.no_grad():
        h = model.stem(x)
        ys = [h]
        for i in range(1, 5):
            a = ops[2 * i - 2].head(h)
            f = ops[2 * i - 1].head(h + a)
            ys.append(h + a + f)
            sources = [j for j in range(i + 1) if (i - j) % dilation == 0]
            alpha = joins[i - 1].weight
            assert len(alpha) == len(sources)
            h = sum(w * ys[j] for w, j in zip(alpha, sources))
        torch.testing.assert_close(model(x), model.head(h), atol=1e-5, rtol=1e-5)


def test_denseformer_adds_one_scalar_per_averaged_output():
    base, dense = (complexity(build_spec(_arch(p, sublayers=8))).params for p in ("prenorm", "denseformer"))
    assert dense - base == sum(i + 1 for i in range(1, 5))  # block i averages Y_0 .. Y_i


@pytest.mark.parametrize("pattern, kw", VARIANTS + [("prenorm", {"tie_embeddings": False})], ids=lambda v: str(v))
def test_complexity_params_equal_the_built_model(pattern, kw):
    arch = _arch(pattern, **kw)
    model = build_model(arch)
    assert complexity(build_spec(arch)).params == sum(p.numel() for p in model.parameters())


def test_hand_count_of_a_small_decoder():
    """Width 32, 4 sublayers, MLP hidden 64, context 12, vocab 256."""
    attention = 32 + 4 * 32 * 32  # norm gain, q/k/v/out projections
    mlp = 32 + 3 * 32 * 64  # norm gain, gate/up/down projections
    tied = 256 * 32 + 2 * attention + 2 * mlp + 32  # embedding, sublayers, final norm
    for tie, params in ((True, tied), (False, tied + 256 * 32)):
        cx = complexity(build_spec(_arch("prenorm", sublayers=4, mlp_ratio=2.0, tie_embeddings=tie)))
        assert cx.params == params
        # per token: projections, scores and values over (context + 1) / 2 keys on average, LM head
        assert cx.flops == 2 * (4 * 32 * 32 + (T + 1) * 32) + 2 * 3 * 32 * 64 + 32 * 256


def test_multiply_adds_match_a_counted_forward_pass():
    """The projections and the LM head against torch's flop counter (which does not count CPU SDPA kernels:
    the scores and weighted values, (context + 1) * width per attention sublayer, are hand-counted above)."""
    from torch.utils.flop_counter import FlopCounterMode

    arch = _arch("prenorm", sublayers=6)
    model = build_model(arch)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(_tokens(1))
    per_token = counter.get_total_flops() / 2 / T
    assert per_token == complexity(build_spec(arch)).flops - 3 * (T + 1) * WIDTH


def test_decoder_spec_round_trips_and_image_specs_keep_their_form():
    spec = build_spec(_arch("denseformer", sublayers=4))
    again = NetworkSpec.from_json(spec.to_json())
    assert again == spec and again.graph_hash == spec.graph_hash
    assert spec.layout == "tokens" and dict(spec.op_options)["heads"] == HEADS
    image = build_spec(make_arch(depth=10, growth=4)).to_dict()
    assert "layout" not in image and "op_options" not in image


def test_decoder_keys_stay_out_of_dumps_at_their_defaults():
    assert not {"sublayers", "heads", "context", "mlp_ratio", "tie_embeddings", "vocab"} & set(make_arch().model_dump())
    assert make_arch(family="decoder", pattern="prenorm", heads=2).model_dump()["heads"] == 2


@pytest.mark.parametrize("options, message", [
    (dict(family="densenet", heads=2), "decoder keys"),
    (dict(pattern="dense"), "unknown decoder pattern"),
    (dict(heads=5), "even width"),
    (dict(heads=32), "even width"),
    (dict(pattern="dense-concat", tie_embeddings=True), "tie_embeddings: false"),
    (dict(pattern="denseformer", sublayers=5), "sublayers must be even"),
    (dict(pattern="partial", m=0), "m must be"),
    (dict(pattern="denseformer", pattern_options={"dilation": 0}), "dilation must be"),
    (dict(bottleneck=True), "has no bottleneck"),
])
def test_bad_decoder_configs_name_the_problem(options, message):
    options = {"family": "decoder", "pattern": "prenorm", "growth": WIDTH, **options}
    with pytest.raises((ConfigError, SpecError), match=message):
        build_spec(make_arch(**options))


def test_pattern_names_are_per_family():
    assert "partial" in PATTERNS and "partial" in DECODER_PATTERNS and "prenorm" not in PATTERNS
    image = build_spec(make_arch(pattern="partial", depth=10, growth=4))
    assert image.blocks[0].nodes[1].op == "conv3x3" and image.layout == "maps"
    with pytest.raises(ConfigError, match="a decoder pattern: set family decoder"):
        build_spec(make_arch(pattern="prenorm", depth=10))


OPTIONS = {"heads": 2, "context": T, "mlp_hidden": 24, "sublayers": 4}


@pytest.mark.parametrize("name", ["attention", "swiglu"])
@pytest.mark.parametrize("cin", [16, 40])  # 40: a dense-concat sublayer reading more than its width
def test_each_sublayer_formula_counts_its_built_module(name, cin):
    from torch.utils.flop_counter import FlopCounterMode

    from connectome.costs import OP_KINDS

    module = OP_KINDS.modules[name](cin, 16, bn_size=1, dropout=0.0, **OPTIONS)
    cx = OP_KINDS.costs[name](cin, 16, 1, 1, **OPTIONS)
    assert cx.params == sum(p.numel() for p in module.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = module.tail(module.head(torch.randn(1, T, cin)))
    scores = (T + 1) * 16 if name == "attention" else 0  # SDPA: not seen by the counter on CPU
    assert out.shape == (1, T, 16) and counter.get_total_flops() / 2 / T == cx.flops - scores



def test_source_usage_reads_the_input_projections():
    usage = build_model(_arch("dense-concat", sublayers=4)).source_usage()[0]
    assert usage.shape == (4, 4) and (usage[np.tril_indices(4)] > 0).all()
    assert np.isnan(usage[np.triu_indices(4, 1)]).all()  # no edge from a later sublayer


def test_a_copied_tied_model_ties_its_own_embedding():
    import copy

    original = build_model(_arch("prenorm"))
    model = copy.deepcopy(original)
    assert model.head.embedding[0] is model.stem.embedding is not original.stem.embedding
    assert not any("lm_head" in k or k.startswith("head.embedding") for k in model.state_dict())
