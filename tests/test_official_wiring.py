"""The decoder wirings against hand transcriptions of their official or most-used reference code.

tests/reference_official.py restates what each code base computes in its own parametrisation; here
connectome's parameters are mapped onto it (random values, zero-initialised ones included) and
values and gradients must agree. Where the parametrisations differ (a shared scale, a norm gain, a
bounded softmax pair), the test names the difference and checks the one-to-one map or the count
of parameters it costs. README's pattern table says which code each variant was checked against.
"""
import pytest
import torch

from connectome import build_model, build_spec, make_arch
from connectome.complexity import complexity
from connectome.errors import ConfigError, SpecError
from reference_official import (deepseek_mhc_head, deepseek_mhc_layer, deepseek_sinkhorn, epfml_denseformer,
                                factory_laurel, moonshot_attnres, reference_hc_layer)

WIDTH, HEADS, T = 16, 2, 8


def _model(pattern, sublayers=8, **options):
    arch = make_arch(family="decoder", pattern=pattern, growth=WIDTH, heads=HEADS, context=T, sublayers=sublayers,
                     pattern_options=options)
    torch.manual_seed(0)
    return build_model(arch)


def _nodes(model):
    return [n for _, n in sorted(model.blocks[0].nodes.items(), key=lambda kv: int(kv[0]))]


def _randomise(params, std=0.5):
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * std)


def _tokens():
    return torch.randint(0, 256, (2, T))


def _agree(out, expected, params, keep=False):
    """Equal values, and equal gradients of a loss for every parameter in `params` (`keep`: the graphs)."""
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for g, e in zip(torch.autograd.grad(out.square().mean(), params, retain_graph=keep),
                    torch.autograd.grad(expected.square().mean(), params, retain_graph=keep), strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


def _stream_joins(model):
    nodes = _nodes(model)
    return [(n.op.head, n.join, w.join) for n, w in zip(nodes, nodes[1:]) if n.agg == "hc-read"]


def _mhc_official_parameters(read, write):
    """DeepSeek's fused (fn, scale, base) from connectome's split read (A_m) and write (A_r, B) parameters."""
    fn = torch.cat([read.proj.T, write.out_proj.T, write.mix_proj.T])  # rows: pre (n), post (n), res (n * n)
    scale = torch.stack([read.scale, write.out_scale, write.mix_scale])
    base = torch.cat([read.prior, write.out_prior, write.mix_prior.flatten()])
    return fn, scale, base


@pytest.mark.parametrize("official_eps", [False, True])
def test_mhc_follows_deepseeks_reference_ops(official_eps):
    """tile_kernels/torch/mhc.py: one projection of the flattened state divided by its RMS, three scales, pre =
    sigmoid (+ 1e-6), post = 2 sigmoid, res = softmax-first Sinkhorn (+ 1e-6), H'_k = post_k y + sum_m res[m, k] H_m.
    connectome's read/write joins are the same maps; only the epsilons differ (1e-4 with them)."""
    model = _model("mhc", sublayers=4)
    joins = [p for n, p in model.named_parameters() if "join" in n]
    _randomise(joins)
    x = _tokens()
    eps = {"pre_eps": 1e-6, "sinkhorn_eps": 1e-6} if official_eps else {"pre_eps": 0.0, "sinkhorn_eps": 0.0}
    streams = model.stem(x).unsqueeze(-2).expand(-1, -1, 4, -1)
    for layer, read, write in _stream_joins(model):
        streams = deepseek_mhc_layer(streams, layer, *_mhc_official_parameters(read, write), repeat=20, **eps)
    out, expected = model(x), model.head(streams.sum(-2))  # connectome's head reads the sum (README says why)
    if official_eps:
        torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    else:
        _agree(out, expected, joins)


def test_mhc_with_the_learned_head_is_deepseeks_network():
    """head: learned closes the streams as TileKernels' mhc_head: sum_m (sigmoid(s fn . RMSNorm(vec H) + b)_m) H_m,
    with n x nC + n + 1 parameters; it starts at the mean of the streams (b = -log(n - 1))."""
    model = _model("mhc", sublayers=4, head="learned")
    head = _nodes(model)[-1].join
    assert sum(p.numel() for p in head.parameters()) == 4 * 4 * WIDTH + 4 + 1
    torch.testing.assert_close(head.weights(torch.randn(3, 4, WIDTH)), torch.full((3, 4), 0.25))
    joins = [p for n, p in model.named_parameters() if "join" in n]
    _randomise(joins)
    x = _tokens()
    streams = model.stem(x).unsqueeze(-2).expand(-1, -1, 4, -1)
    for layer, read, write in _stream_joins(model):
        streams = deepseek_mhc_layer(streams, layer, *_mhc_official_parameters(read, write), pre_eps=0.0,
                                     sinkhorn_eps=0.0)
    _agree(model(x), model.head(deepseek_mhc_head(streams, head.proj.T, head.scale, head.prior, pre_eps=0.0)), joins)


def test_the_mhc_head_option_is_checked_hashed_counted_and_causal():
    arch = lambda **o: make_arch(family="decoder", pattern="mhc", growth=WIDTH, heads=HEADS, context=T,  # noqa: E731
                                 sublayers=4, pattern_options=o)
    model = _model("mhc", sublayers=4, head="learned").eval()
    assert complexity(build_spec(arch(head="learned"))).params == sum(p.numel() for p in model.parameters())
    x = _tokens()
    changed = x.clone()
    changed[:, 5] = (x[:, 5] + 1) % 256
    with torch.no_grad():
        assert torch.equal(model(x)[:, :5], model(changed)[:, :5])
    assert build_spec(arch(head="learned")).canonical_hash != build_spec(arch()).canonical_hash
    assert build_spec(arch(head="sum")).canonical_hash == build_spec(arch()).canonical_hash
    with pytest.raises((SpecError, ConfigError), match="head must be one of sum, learned"):
        build_spec(arch(head="mean"))


def test_connectomes_sinkhorn_is_deepseeks_without_its_epsilon():
    from connectome.joins import sinkhorn

    """Row softmax then columns = exp, rows, columns: the same 20 rounds. The 1e-6 epsilons move an entry by
    about 1e-5 at logits of unit scale (more where an entry is near zero: it is kept off zero)."""
    logits = torch.randn(6, 4, 4)
    torch.testing.assert_close(sinkhorn(logits, 20), deepseek_sinkhorn(logits, 20, 0.0))
    torch.testing.assert_close(sinkhorn(logits, 20), deepseek_sinkhorn(logits, 20, 1e-6), atol=1e-4, rtol=0)


def test_mhc_parameters_per_sublayer_are_deepseeks():
    """fn n(n+2) x nC, base n(n+2), scale 3 per sublayer, as the reference; its learned head (n x nC, n, 1) is
    the one part connectome leaves out (the head reads the sum of the streams)."""
    model = _model("mhc", sublayers=4)
    n, c = 4, WIDTH
    for _, read, write in _stream_joins(model):
        count = sum(p.numel() for p in [*read.parameters(), *write.parameters()])
        assert count == n * (n + 2) * n * c + n * (n + 2) + 3


def test_mhc_starts_where_the_paper_puts_it():
    """Scales 0.01 (the paper's alpha init, as the factory), projections zero, so A_m = 1/n, A_r = 1/n, B = 1."""
    model = _model("mhc", sublayers=2)
    for _, read, write in _stream_joins(model):
        assert read.scale.item() == write.mix_scale.item() == write.out_scale.item() == pytest.approx(0.01)
        streams = torch.randn(3, 4, WIDTH)
        torch.testing.assert_close(read.weights(streams), torch.full((3, 4), 0.25))
        mix, out = write.weights(streams)
        torch.testing.assert_close(mix, torch.full((3, 4, 4), 0.25))
        torch.testing.assert_close(out, torch.ones(3, 4))


def _hc_reference_parameters(read, write):
    """lucidrains' (static_alpha, static_beta, W_alpha, W_beta, s_alpha, s_beta) from connectome's joins."""
    static_alpha = torch.cat([read.prior[:, None], write.mix_prior], 1)  # (n, 1 + n)
    if not hasattr(read, "proj"):
        return static_alpha, write.out_prior
    w_alpha = torch.cat([read.proj[:, None], write.mix_proj], 1)  # (C, 1 + n)
    return static_alpha, write.out_prior, w_alpha, write.out_proj, read.scale, write.out_scale


@pytest.mark.parametrize("dynamic", [True, False])
def test_hyper_connections_follow_the_reference_code(dynamic):
    """lucidrains/hyper-connections: alpha = static + s_alpha tanh(RMSNorm(H_i) W_alpha) with ONE scale for the
    read and the mixing columns. connectome scales them apart (read.scale, write.mix_scale): with the two
    equal (as at initialisation) the networks agree in values and gradients."""
    model = _model("hyper-connections", sublayers=4, dynamic=dynamic)
    joins = [p for n, p in model.named_parameters() if "join" in n]
    _randomise(joins)
    triples = _stream_joins(model)
    if dynamic:
        with torch.no_grad():
            for _, read, write in triples:
                write.mix_scale.copy_(read.scale)
    x = _tokens()
    streams = model.stem(x).unsqueeze(-2).expand(-1, -1, 4, -1)
    for layer, read, write in triples:
        streams = reference_hc_layer(streams, layer, *_hc_reference_parameters(read, write))
    out, expected = model(x), model.head(streams.sum(-2))
    tied = [(r.scale, w.mix_scale) for _, r, w in triples] if dynamic else []
    apart = {id(p) for pair in tied for p in pair}
    _agree(out, expected, [p for p in joins if id(p) not in apart], keep=True)
    for read_scale, mix_scale in tied:  # the shared scale's gradient is the sum of the two separate ones
        ours = torch.autograd.grad(out.square().mean(), [read_scale, mix_scale], retain_graph=True)
        theirs = torch.autograd.grad(expected.square().mean(), read_scale, retain_graph=True)[0]
        torch.testing.assert_close(ours[0] + ours[1], theirs, atol=1e-6, rtol=1e-4)


def test_hyper_connections_start_as_the_reference_code_and_count_one_scale_more():
    """Initial values as lucidrains and the factory: A_m one-hot on stream l mod n, A_r = I, B = 1, dynamic
    projections zero, scales 0.01. Per sublayer connectome holds one parameter more (the separate read scale)."""
    model = _model("hyper-connections", sublayers=6)
    n, c = 4, WIDTH
    for layer, (_, read, write) in enumerate(_stream_joins(model)):
        torch.testing.assert_close(read.prior, torch.eye(n)[layer % n])
        torch.testing.assert_close(write.mix_prior, torch.eye(n))
        torch.testing.assert_close(write.out_prior, torch.ones(n))
        assert not read.proj.any() and not write.mix_proj.any() and not write.out_proj.any()
        assert read.scale.item() == write.mix_scale.item() == write.out_scale.item() == pytest.approx(0.01)
        reference = n * (1 + n) + n + c * (1 + n) + c + 2  # static alpha, beta; W_alpha, W_beta; s_alpha, s_beta
        assert sum(p.numel() for p in [*read.parameters(), *write.parameters()]) == reference + 1


def _attnres_sites(model):
    return [(n.op.head if n.op is not None else None, n.join.query if n.agg == "depth-attention" else None)
            for n in _nodes(model) if n.op is not None or n.agg == "depth-attention"]


@pytest.mark.parametrize("block", [2, 4])
def test_block_attention_residuals_follow_moonshots_pseudocode(block):
    """MoonshotAI/Attention-Residuals' block_attn_res with a per-sublayer RMSNorm gain g: connectome's key norm
    has no gain, and query w . (g * k) = (w * g) . k, so connectome with query w * g is the official network."""
    model = _model("attnres", block=block)
    nodes = _nodes(model)
    sublayers = [n for n in nodes if n.op is not None]
    queries = {id(n): n.join.query for n in nodes if n.agg == "depth-attention"}
    gains = {key: torch.rand(WIDTH) + 0.5 for key in queries}
    _randomise(queries.values(), std=1.0)
    official = {key: q / gains[key] for key, q in queries.items()}  # the official query w = connectome's / g
    zero = torch.zeros(WIDTH)  # the first sublayer reads x0 alone: any query
    site = lambda n: (n.op.head, official.get(id(n), zero), gains.get(id(n), torch.ones(WIDTH)))  # noqa: E731
    pairs = [(site(a), site(f)) for a, f in zip(sublayers[::2], sublayers[1::2], strict=True)]
    head = nodes[-1]
    x = _tokens()
    expected = model.head(moonshot_attnres(model.stem(x), pairs, (official[id(head)], gains[id(head)]), block))
    _agree(model(x), expected, [*model.stem.parameters(), *queries.values()])


@pytest.mark.parametrize("block", [0, 2])
def test_attention_residual_queries_start_at_zero_as_the_official_code(block):
    """Zero queries (uniform weights) as the paper and pseudocode; C parameters per node where the official
    code holds 2 C (query and key-norm gain)."""
    model = _model("attnres", block=block)
    joins = [n.join for n in _nodes(model) if n.agg == "depth-attention"]
    assert joins and all(not j.query.any() for j in joins)
    assert all(sum(p.numel() for p in j.parameters()) == WIDTH for j in joins)


@pytest.mark.parametrize("form", ["rw", "lr", "rw+lr"])
def test_laurel_is_the_factorys_equation_with_its_weights_unbounded(form):
    """The factory's x <- a f(x) + b (x + x A B) with (a, b) = 2 softmax(w): connectome learns a and b directly
    (any pair, not only a + b = 2); set to the factory's values, the networks agree."""
    model = _model("laurel", sublayers=4, form=form, rank=2)
    joins = [n.join for n in _nodes(model) if n.agg == "laurel"]
    sublayers = [n.op.head for n in _nodes(model) if n.op is not None]
    _randomise([p for j in joins for p in j.parameters()])
    logits = [torch.randn(2) for _ in joins]
    if "rw" in form:
        with torch.no_grad():
            for j, w in zip(joins, logits):
                j.alpha.copy_(2 * w.softmax(0)[0])
                j.beta.copy_(2 * w.softmax(0)[1])
    lr = lambda j: (j.down.weight.T, j.up.weight.T) if j.down is not None else (None, None)  # noqa: E731
    layers = [(f, w, *lr(j)) for f, j, w in zip(sublayers, joins, logits, strict=True)]
    x = _tokens()
    lr_weights = [p for j in joins if j.down is not None for p in (j.down.weight, j.up.weight)]
    _agree(model(x), model.head(factory_laurel(model.stem(x), layers, form)), [*model.stem.parameters(), *lr_weights])


def test_laurel_starts_as_the_factory_and_counts_its_parameters():
    """a = b = 1 and B = 0 at start (the factory's 2 softmax(0)); 2 scalars (rw) and 2 r D (lr) per sublayer."""
    model = _model("laurel", sublayers=4, form="rw+lr", rank=4)
    for j in (n.join for n in _nodes(model) if n.agg == "laurel"):
        assert j.alpha.item() == j.beta.item() == 1.0 and not j.up.weight.any()
        assert sum(p.numel() for p in j.parameters()) == 2 + 2 * 4 * WIDTH


@pytest.mark.parametrize("dilation, period", [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1)])
def test_denseformer_follows_the_official_dwa_modules(dilation, period):
    """epfml/DenseFormer's DWAModules: Y_i joins accumulator i mod k (x0 in 0); after blocks p, 2p, .. the next
    input is the learned average of that accumulator, started one-hot on Y_i."""
    model = _model("denseformer", dilation=dilation, period=period)
    nodes = _nodes(model)
    averages = [n.join for n in nodes if n.agg == "weighted"]
    for j in averages:
        torch.testing.assert_close(j.weight.detach(), torch.eye(len(j.weight))[-1])  # the official start
    _randomise([j.weight for j in averages])
    sublayers = [n.op.head for n in nodes if n.op is not None]

    def pair(attn, mlp):
        def block(x):
            h = x + attn(x)
            return h + mlp(h)
        return block

    blocks = [pair(a, f) for a, f in zip(sublayers[::2], sublayers[1::2], strict=True)]
    alphas, it = [], iter(averages)
    for i in range(1, len(blocks) + 1):
        alphas.append(next(it).weight if i % period == 0 else None)
    x = _tokens()
    _agree(model(x), model.head(epfml_denseformer(model.stem(x), blocks, alphas, dilation, period)),
           [j.weight for j in averages])
