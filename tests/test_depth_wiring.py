"""Dynamic depth wirings as graphs: MUDDFormer (static and dynamic) and Attention Residuals (full and block),
against hand-written equations; which variants equal prenorm at initialisation; hashes; connection params."""
import networkx as nx
import pytest
import torch

from connectome import build_model, build_spec, make_arch
from connectome.complexity import complexity
from connectome.errors import SpecError
from connectome.joins import Join
from connectome.patterns import DECODER_PATTERNS
from connectome.spec import BlockSpec
from reference_depth_wiring import (attention, depth_attention, frac_connections, hyper_connections, mudd_mix, sinkhorn,
                                    swiglu)

WIDTH, HEADS, T, N = 16, 2, 8, 6
# Every decoder wiring with the options that change its graph (the file pattern is any of them).
VARIANTS = [("prenorm", {}), ("plain", {}), ("partial", {"m": 2}), ("dense-concat", {}), ("denseformer", {}),
            ("denseformer", {"dilation": 2}), ("value-residual", {}), ("value-residual", {"learned": True}),
            ("muddformer", {}), ("muddformer", {"dynamic": False}), ("attnres", {}), ("attnres", {"block": 2}),
            ("laurel", {}), ("laurel", {"form": "rw"}), ("laurel", {"form": "lr", "rank": 2}),
            ("hyper-connections", {}), ("hyper-connections", {"dynamic": False}),
            ("hyper-connections", {"streams": 2}), ("mhc", {}), ("mhc", {"dynamic": False}),
            ("frac-connections", {}), ("frac-connections", {"dynamic": False}), ("frac-connections", {"fractions": 4})]
# MUDDFormer with dense aggregations on some of its inputs only (the others read the stream, as in prenorm).
VARIANTS += [("muddformer", {"ports": "r"}), ("muddformer", {"ports": "qk", "dynamic": False})]
# Who equals prenorm at initialisation (given the same body weights) and, for the others, why not.
EQUAL_AT_INIT = {"prenorm", "denseformer", "muddformer", "laurel", "hyper-connections", "mhc", "frac-connections"}
NOT_EQUAL_AT_INIT = {
    "plain": "no skip connection",
    "partial": "the stream keeps only the m latest outputs",
    "dense-concat": "concatenation: its input projections have another shape",
    "value-residual": "the paper mixes V_1 into every later attention from the start (lambda = 0.5)",
    "attnres": "a zero query gives a softmax of equal weights: the mean of the sources, not their sum",
}


def _arch(pattern, **options):
    m = options.pop("m", None)
    return make_arch(family="decoder", pattern=pattern, growth=WIDTH, heads=HEADS, context=T, sublayers=N,
                     pattern_options=options, tie_embeddings=pattern != "dense-concat", m=m)


def _sublayers(model):
    nodes = model.blocks[0].nodes
    return [nodes[k].op for k in sorted(nodes, key=int) if nodes[k].op is not None]


def _randomised(model):
    """Random norm gains and connection parameters (zero-initialised W2 and queries included)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.rand_like(p) + 0.5)
            elif ".w2." in name or ".up." in name and "join" in name or "proj" in name and "join" in name:
                p.normal_(std=0.3)
            elif "join" in name and p.dim() == 2:  # the stream mixing priors
                p.add_(torch.randn_like(p) * 0.3)
    return model


def _copy_body(source, target):
    """Stem, head and sublayer weights of `source` into `target`; a single norm fills every port norm."""
    with torch.no_grad():
        target.stem.load_state_dict(source.stem.state_dict())
        target.head.load_state_dict(source.head.state_dict())
        for s, t in zip(_sublayers(source), _sublayers(target), strict=True):
            state = s.state_dict()
            if getattr(t, "port_norms", None) and len(t.port_norms):
                norm = state.pop("norm.weight")
                state.update({f"port_norms.{p}.weight": norm for p in t.port_norms})
            t.load_state_dict(state)


def _tokens():
    return torch.randint(0, 256, (2, T))


@pytest.mark.parametrize("pattern, options", [v for v in VARIANTS if v[0] in EQUAL_AT_INIT], ids=str)
def test_claimed_variants_equal_prenorm_at_initialisation(pattern, options):
    """Multi-stream wirings hand the head the sum of n equal streams, n times prenorm's stream (the paper's
    sum; the head's RMSNorm removes the factor up to its epsilon): their block output is compared over n."""
    prenorm = _randomised(build_model(_arch("prenorm")))
    model = build_model(_arch(pattern, **options))
    _copy_body(prenorm, model)
    x = _tokens()
    if pattern in ("hyper-connections", "mhc"):
        streams = options.get("streams", 4)
        h = model.stem(x)
        torch.testing.assert_close(model.blocks[0](h) / streams, prenorm.blocks[0](h), atol=1e-6, rtol=1e-5)
        return
    torch.testing.assert_close(model(x), prenorm(x), atol=1e-6, rtol=1e-5)


def test_the_other_variants_do_not_and_the_lists_cover_every_pattern():
    assert EQUAL_AT_INIT | set(NOT_EQUAL_AT_INIT) == set(DECODER_PATTERNS) - {"file"}
    prenorm = _randomised(build_model(_arch("prenorm")))
    x = _tokens()
    for pattern in sorted(set(NOT_EQUAL_AT_INIT) - {"dense-concat"}):
        model = build_model(_arch(pattern))
        _copy_body(prenorm, model)
        assert not torch.allclose(model(x), prenorm(x), atol=1e-4), pattern


def _mudd_reference(model, x, dynamic):
    """X_0 = embedding; block 1 is prenorm; block i > 1: q, k, v, r = DA_p(X_0 .. X_{i-1}),
    a = r + attn(norm_q(q), norm_k(k), norm_v(v)), X_i = a + MLP(norm(a)); logits = head(DA(X_0 .. X_n))."""
    nodes = model.blocks[0].nodes
    graph = model.blocks[0].spec

    def mix(node, port, sources):
        join = getattr(nodes[str(node)].port_joins, port) if port else nodes[str(node)].join
        if dynamic:
            return mudd_mix(sources, join.w1.weight, join.w2.weight, join.prior)
        return sum(w * s for w, s in zip(join.weight, sources))

    xs = [model.stem(x)]
    attentions = [n.id for n in graph.nodes if n.op == "attention"]
    for i, a_id in enumerate(attentions):
        a, f = nodes[str(a_id)].op, nodes[str(a_id + 1)].op
        if i == 0:
            y, _ = attention(xs[0], xs[0], xs[0], [a.norm.weight] * 3, a.qkv.weight, a.proj.weight, HEADS)
            h = xs[0] + y
        else:
            q, k, v, r = (mix(a_id, p, xs) for p in "qkvr")
            norms = [a.port_norms[p].weight for p in "qkv"]
            h = r + attention(q, k, v, norms, a.qkv.weight, a.proj.weight, HEADS)[0]
        xs.append(h + swiglu(h, f.norm.weight, f.gate.weight, f.up.weight, f.down.weight))
    return model.head(mix(graph.output, "", xs))


@pytest.mark.parametrize("dynamic", [True, False])
def test_muddformer_follows_its_equations_values_and_gradients(dynamic):
    model = _randomised(build_model(_arch("muddformer", dynamic=dynamic)))
    x = _tokens()
    out, expected = model(x), _mudd_reference(model, x, dynamic)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    joins = [p for n, p in model.named_parameters() if "join" in n]
    assert joins
    for g, e in zip(torch.autograd.grad(out.square().mean(), joins),
                    torch.autograd.grad(expected.square().mean(), joins)):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


def _attnres_reference(model, x, block):
    """Sublayer v reads depth attention over the completed group sums (b_0 = x0) and its group's partial sum."""
    ops = _sublayers(model)
    queries = [n.join.query for _, n in sorted(model.blocks[0].nodes.items(), key=lambda kv: int(kv[0]))
               if n.agg == "depth-attention"]
    done, group, q = [model.stem(x)], [], iter(queries)
    read = lambda sources: sources[0] if len(sources) == 1 else depth_attention(sources, next(q))  # noqa: E731
    for op in ops:
        sources = done + ([sum(group)] if group else [])
        group.append(op.head(read(sources)))
        if block == 0 or len(group) == block:
            done, group = done + [sum(group)], []
    if group:
        done.append(sum(group))
    return model.head(read(done))


@pytest.mark.parametrize("block", [0, 2, 4])
def test_attention_residuals_follow_their_equations_values_and_gradients(block):
    model = _randomised(build_model(_arch("attnres", block=block)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("query"):
                p.normal_()
    x = _tokens()
    out, expected = model(x), _attnres_reference(model, x, block)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    queries = [p for n, p in model.named_parameters() if n.endswith("query")]
    for g, e in zip(torch.autograd.grad(out.square().mean(), queries),
                    torch.autograd.grad(expected.square().mean(), queries)):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("pattern, options", VARIANTS, ids=str)
def test_every_variant_is_causal_and_counts_its_params(pattern, options):
    model = _randomised(build_model(_arch(pattern, **options))).eval()
    assert complexity(build_spec(_arch(pattern, **options))).params == sum(p.numel() for p in model.parameters())
    x = _tokens()
    changed = x.clone()
    changed[:, 5] = (x[:, 5] + 1) % 256
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.equal(a[:, :5], b[:, :5]) and not torch.allclose(a[:, 5], b[:, 5])


def test_the_canonical_hash_separates_every_variant():
    hashes = {build_spec(_arch(p, **o)).canonical_hash for p, o in VARIANTS}
    assert len(hashes) == len(VARIANTS)


@pytest.mark.parametrize("pattern, options", VARIANTS, ids=str)
def test_every_connection_parameter_lives_in_a_join(pattern, options):
    """The LM recipe gives Join parameters no weight decay: learned wiring must live there."""
    model = build_model(_arch(pattern, **options))
    body = {id(p) for part in (model.stem, model.head, *_sublayers(model)) for p in part.parameters()}
    joins = {id(p) for m in model.modules() if isinstance(m, Join) for p in m.parameters()}
    assert {id(p) for p in model.parameters()} - body == joins


@pytest.mark.parametrize("agg", ["mudd", "depth-attention"])
def test_a_dynamic_kind_on_a_node_with_one_input_is_an_error(agg):
    g = nx.DiGraph()
    g.add_node(0, op="input", agg="concat", width=WIDTH)
    g.add_node(1, op="swiglu", agg=agg, width=WIDTH)
    g.add_node(2, op="identity", agg="sum", width=0)
    g.add_edges_from([(0, 1), (1, 2)])
    with pytest.raises(SpecError, match=rf"node 1 \({agg}\) weighs its inputs per token and needs at least 2"):
        BlockSpec.from_graph(g)


def test_bad_options_name_the_problem():
    with pytest.raises(SpecError, match="dynamic must be true or false"):
        build_spec(_arch("muddformer", dynamic="yes"))
    with pytest.raises(SpecError, match="block must be a whole number"):
        build_spec(_arch("attnres", block=-1))
    with pytest.raises(SpecError, match="sublayers must be even"):
        build_spec(make_arch(family="decoder", pattern="muddformer", growth=WIDTH, heads=HEADS, sublayers=5))
    for ports in ("", "qq", "qkx"):
        with pytest.raises(SpecError, match="ports must name each of q, k, v, r at most once"):
            build_spec(_arch("muddformer", ports=ports))


def test_the_example_mudd_graph_file_is_the_pattern():
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples/graphs/decoder/muddformer.json"
    kw = dict(family="decoder", growth=64, heads=4, sublayers=4)
    from_file = build_spec(make_arch(pattern="file", pattern_options={"path": str(path)}, **kw))
    assert from_file.canonical_hash == build_spec(make_arch(pattern="muddformer", **kw)).canonical_hash


@pytest.mark.parametrize("form", ["rw", "lr", "rw+lr"])
def test_laurel_follows_its_equations_values_and_gradients(form):
    """x_v = alpha f_v(x_{v-1}) + beta (x_{v-1} + B A x_{v-1}); RW: no B A; LR: alpha = beta = 1."""
    model = _randomised(build_model(_arch("laurel", form=form, rank=2)))
    joins = [n.join for _, n in sorted(model.blocks[0].nodes.items(), key=lambda kv: int(kv[0])) if n.agg == "laurel"]
    with torch.no_grad():
        for j in joins:
            for p in j.parameters():
                p.normal_() if p.dim() else p.uniform_(0.5, 1.5)
    x = _tokens()
    h = model.stem(x)
    for op, j in zip(_sublayers(model), joins, strict=True):
        f = op.head(h)
        skip = h + (h @ j.down.weight.T @ j.up.weight.T if "lr" in form else 0)
        h = j.alpha * f + j.beta * skip if "rw" in form else f + skip
    out, expected = model(x), model.head(h)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    params = [p for j in joins for p in j.parameters()]
    assert len(params) == len(joins) * {"rw": 2, "lr": 2, "rw+lr": 4}[form]
    for g, e in zip(torch.autograd.grad(out.square().mean(), params),
                    torch.autograd.grad(expected.square().mean(), params)):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("pattern, options", [("hyper-connections", {}), ("hyper-connections", {"dynamic": False}),
                                              ("mhc", {}), ("mhc", {"dynamic": False, "streams": 3})], ids=str)
def test_multi_stream_wirings_follow_their_equations_values_and_gradients(pattern, options):
    model = _randomised(build_model(_arch(pattern, **options)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.fill_(0.7)
    nodes = [n for _, n in sorted(model.blocks[0].nodes.items(), key=lambda kv: int(kv[0]))]
    triples = [(n.op.head, n.join, w.join) for n, w in zip(nodes, nodes[1:]) if n.agg == "hc-read"]
    x = _tokens()
    out = model(x)
    expected = model.head(hyper_connections(model.stem(x), triples, options.get("streams", 4), pattern == "mhc"))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    joins = [p for n, p in model.named_parameters() if "join" in n]
    for g, e in zip(torch.autograd.grad(out.square().mean(), joins),
                    torch.autograd.grad(expected.square().mean(), joins)):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("options", [{}, {"dynamic": False}, {"fractions": 4}], ids=str)
def test_frac_connections_follow_their_equations_values_and_gradients(options):
    model = _randomised(build_model(_arch("frac-connections", **options)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.fill_(0.7)
    nodes = [n for _, n in sorted(model.blocks[0].nodes.items(), key=lambda kv: int(kv[0]))]
    triples = [(n.op.head, n.join, w.join) for n, w in zip(nodes, nodes[1:]) if n.agg == "frac-read"]
    assert len(triples) == N
    x = _tokens()
    out = model(x)
    expected = model.head(frac_connections(model.stem(x), triples, options.get("fractions", 2)))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    joins = [p for n, p in model.named_parameters() if "join" in n]
    for g, e in zip(torch.autograd.grad(out.square().mean(), joins),
                    torch.autograd.grad(expected.square().mean(), joins)):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


def test_mhc_mixing_is_doubly_stochastic():
    from connectome.joins import sinkhorn as projected

    logits = torch.randn(5, 4, 4)
    mixed = projected(logits)
    torch.testing.assert_close(mixed.sum(-1), torch.ones(5, 4), atol=1e-3, rtol=0)  # 20 iterations: near
    torch.testing.assert_close(mixed.sum(-2), torch.ones(5, 4), atol=1e-6, rtol=0)  # the last step: exact
    assert (mixed >= 0).all()
    torch.testing.assert_close(mixed, sinkhorn(logits))


@pytest.mark.parametrize("streams", [3, 5])
def test_streams_that_do_not_divide_the_width_are_an_error(streams):
    g = nx.DiGraph()
    g.add_node(0, op="input", agg="concat", width=WIDTH)
    g.add_node(1, op="identity", agg="streams", width=0, streams=4)  # 64 channels
    g.add_node(2, op="swiglu", agg="hc-read", width=WIDTH, streams=streams)
    g.add_node(3, op="identity", agg="sum", width=0)
    g.add_edges_from([(0, 1), (1, 2), (2, 3)])
    with pytest.raises(SpecError, match=rf"node 2 \(hc-read\) {streams} streams do not divide the width 64"):
        BlockSpec.from_graph(g)


@pytest.mark.parametrize("fractions", [3, 5])
def test_fractions_that_do_not_divide_the_width_are_one_line_exit_2(fractions, capsys):
    from connectome.cli import main

    with pytest.raises(SpecError, match=rf"node 1 \(frac-read\) {fractions} fractions do not divide the width 16"):
        build_spec(_arch("frac-connections", fractions=fractions))
    argv = ["graph", "--family", "decoder", "--pattern", "frac-connections", "--growth", "16", "--heads", "2",
            "--sublayers", "4", "--pattern-option", f"fractions={fractions}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "fractions do not divide the width 16" in err and len(err.strip().splitlines()) == 1


def test_the_graph_shows_the_fractions():
    spec = build_spec(_arch("frac-connections", fractions=4))
    states = [n for n in spec.blocks[0].nodes if n.agg in ("frac-read", "frac-write")]
    assert len(states) == 2 * N and all(n.width == WIDTH and dict(n.options)["fractions"] == 4 for n in states)
    from connectome.cli.graph import as_text

    assert "frac-write 16 ch" in as_text(_arch("frac-connections", fractions=4), spec, complexity(spec), None)


def test_the_graph_shows_the_streams():
    spec = build_spec(_arch("hyper-connections", streams=2))
    states = [n for n in spec.blocks[0].nodes if n.agg in ("streams", "hc-write")]
    assert states and all(n.width == 2 * WIDTH and dict(n.options)["streams"] == 2 for n in states)
    from connectome.cli.graph import as_text

    assert "hc-write 32 ch" in as_text(_arch("hyper-connections", streams=2), spec, complexity(spec), None)


PLAIN_SUMS = ("prenorm", "plain", "partial", "dense-concat")  # covered by the image kinds' file tests


@pytest.mark.parametrize("suffix", ["graphml", "json"])
@pytest.mark.parametrize("pattern, options", [v for v in VARIANTS if v[0] not in PLAIN_SUMS], ids=str)
def test_every_variant_round_trips_through_a_graph_file(pattern, options, suffix, tmp_path):
    from connectome.cli.graph import BLOCK_FORMATS, block_graph

    spec = build_spec(_arch(pattern, **options))
    path = tmp_path / f"block.{suffix}"
    path.write_text(BLOCK_FORMATS[suffix](block_graph(spec.blocks[0])))
    again = build_spec(_arch("file", path=str(path)))
    assert again.blocks[0] == spec.blocks[0] and again.canonical_hash == spec.canonical_hash
