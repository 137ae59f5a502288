"""Named ports: a node aggregates each input port over its own in-edges; an edge names the port it feeds
and the output it reads. Equivalence with prenorm, a hand-written reference, files, hashes, errors."""
import json
from dataclasses import replace

import networkx as nx
import pytest
import torch

from connectome import build_model, build_spec, make_arch
from connectome.complexity import complexity
from connectome.costs import OP_KINDS
from connectome.errors import SpecError
from connectome.executor import ConnectomeNet
from connectome.patterns import DECODER_PATTERNS, BlockContext, block_graph, read_graph
from connectome.spec import BlockSpec, NetworkSpec
from reference_depth_wiring import attention, swiglu

WIDTH, HEADS, T = 16, 2, 8
OPS = frozenset(OP_KINDS.costs)


def decoder(graph: nx.DiGraph, sublayers: int = 4) -> NetworkSpec:
    """A decoder spec whose one block is `graph` (stem, head and op options of a prenorm decoder)."""
    base = build_spec(make_arch(family="decoder", pattern="prenorm", growth=WIDTH, heads=HEADS, context=T,
                                sublayers=sublayers))
    return replace(base, blocks=(BlockSpec.from_graph(graph, OPS),))


def prenorm_graph(n: int = 4) -> nx.DiGraph:
    ctx = BlockContext(n_layers=n, in_channels=WIDTH, growth=WIDTH, op="attention", index=0,
                       ops=("attention", "swiglu"))
    return block_graph("prenorm", ctx, "decoder")


def ported_prenorm(n: int = 4) -> nx.MultiDiGraph:
    """prenorm with every attention node's stream fed to its q, k and v ports separately (sum each)."""
    g = nx.MultiDiGraph(prenorm_graph(n))
    for v in range(1, n + 1, 2):
        sources = list(g.predecessors(v))
        g.remove_edges_from([(u, v) for u in sources])
        g.add_edges_from((u, v, {"port": p}) for u in sources for p in "qkv")
    return g


def _scramble(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.copy_(torch.rand_like(p) + 0.5)
    return model


def _tokens(b=2):
    return torch.randint(0, 256, (b, T))


def test_named_q_k_v_ports_reading_the_stream_equal_prenorm():
    prenorm = _scramble(ConnectomeNet(decoder(prenorm_graph())))
    ported = ConnectomeNet(decoder(ported_prenorm()))
    state = prenorm.state_dict()
    for v in (1, 3):
        norm = state.pop(f"blocks.0.nodes.{v}.op.norm.weight")
        state.update({f"blocks.0.nodes.{v}.op.port_norms.{p}.weight": norm for p in "qkv"})
    ported.load_state_dict(state)
    x = _tokens()
    torch.testing.assert_close(ported(x), prenorm(x), atol=1e-6, rtol=1e-5)


def _crossed_graph() -> nx.MultiDiGraph:
    """1 attention (x0), 2 swiglu (x0 + a1), 3 attention: q <- x0, k <- f2, v <- x0 + a1, r <- f2; out <- 3."""
    g = nx.MultiDiGraph()
    g.add_node(0, op="input", agg="concat", width=WIDTH)
    g.add_node(1, op="attention", agg="sum", width=WIDTH)
    g.add_node(2, op="swiglu", agg="sum", width=WIDTH)
    g.add_node(3, op="attention", agg="sum", width=WIDTH, **{"v.agg": "sum"})
    g.add_node(4, op="identity", agg="sum", width=0)
    g.add_edges_from([(0, 1), (0, 2), (1, 2), (0, 3, {"port": "q"}), (2, 3, {"port": "k"}),
                      (0, 3, {"port": "v"}), (1, 3, {"port": "v"}), (2, 3, {"port": "r"}), (3, 4)])
    return g


def test_ports_follow_a_hand_written_attention_values_and_gradients():
    model = _scramble(ConnectomeNet(decoder(_crossed_graph(), sublayers=3)))
    x = _tokens()
    nodes = model.blocks[0].nodes
    a1, f2, a3 = (nodes[str(v)].op for v in (1, 2, 3))
    h = model.stem(x)
    y1, _ = attention(h, h, h, [a1.norm.weight] * 3, a1.qkv.weight, a1.proj.weight, HEADS)
    y2 = swiglu(h + y1, f2.norm.weight, f2.gate.weight, f2.up.weight, f2.down.weight)
    norms = [a3.port_norms[p].weight for p in "qkv"]
    y3, _ = attention(h, y2, h + y1, norms, a3.qkv.weight, a3.proj.weight, HEADS)
    expected = model.head(y3 + y2)
    out = model(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.square().mean(), norms + [a1.qkv.weight])
    again = torch.autograd.grad(expected.square().mean(), norms + [a1.qkv.weight])
    for g, e in zip(grads, again):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


def test_ported_graphs_are_causal():
    model = _scramble(ConnectomeNet(decoder(_crossed_graph(), sublayers=3))).eval()
    x = _tokens()
    changed = x.clone()
    changed[:, 4] = (x[:, 4] + 1) % 256
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4], b[:, 4])


def test_complexity_counts_the_port_norms():
    spec = decoder(_crossed_graph(), sublayers=3)
    assert complexity(spec).params == sum(p.numel() for p in ConnectomeNet(spec).parameters())
    assert complexity(decoder(ported_prenorm())).params == complexity(decoder(prenorm_graph())).params + 2 * 2 * WIDTH


def test_one_port_graphs_keep_their_form_and_hashes():
    spec = decoder(prenorm_graph())
    assert not spec.blocks[0].parallel and type(spec.blocks[0].to_graph()) is nx.DiGraph
    assert all(len(e) == 3 for e in spec.to_dict()["blocks"][0]["edges"])  # no attribute dict added


def test_the_canonical_hash_sees_ports_and_outputs():
    base = decoder(_crossed_graph(), sublayers=3)
    swapped = _crossed_graph()
    swapped.remove_edge(0, 3, key=0)  # q <- x0 becomes k <- x0
    swapped.add_edge(0, 3, port="k")
    swapped.remove_edge(2, 3, key=0)
    swapped.add_edge(2, 3, port="q")
    other = decoder(swapped, sublayers=3)
    assert other.blocks[0].edges != base.blocks[0].edges
    assert other.canonical_hash != base.canonical_hash and other.graph_hash != base.graph_hash
    again = NetworkSpec.from_json(base.to_json())
    assert again == base and again.canonical_hash == base.canonical_hash


@pytest.mark.parametrize("suffix", ["graphml", "json"])
def test_ported_blocks_round_trip_through_graph_files(tmp_path, suffix):
    from connectome.cli.graph import BLOCK_FORMATS, block_graph as export

    spec = decoder(_crossed_graph(), sublayers=3)
    path = tmp_path / f"block.{suffix}"
    path.write_text(BLOCK_FORMATS[suffix](export(spec.blocks[0])))
    assert read_graph(path).is_multigraph()
    ctx = BlockContext(n_layers=3, in_channels=WIDTH, growth=WIDTH, op="attention", index=0,
                       ops=("attention", "swiglu"))
    again = BlockSpec.from_graph(DECODER_PATTERNS["file"].build(ctx, path=str(path)), OPS)
    assert again == spec.blocks[0]


def test_a_decoder_trains_from_a_ported_graph_file(tmp_path):
    from connectome.cli.graph import BLOCK_FORMATS, block_graph as export

    path = tmp_path / "block.json"
    path.write_text(BLOCK_FORMATS["json"](export(decoder(_crossed_graph(), sublayers=3).blocks[0])))
    model = build_model(make_arch(family="decoder", pattern="file", pattern_options={"path": str(path)},
                                  growth=WIDTH, heads=HEADS, context=T, sublayers=3))
    assert model.blocks[0].spec.nodes[3].ports and model(_tokens()).shape == (2, T, 256)


def _bad(edit) -> nx.MultiDiGraph:
    g = _crossed_graph()
    edit(g)
    return g


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.add_edge(1, 3, port="x"), r"edge 1->3 port: node 3 \(attention\) has no input port 'x'; its ports: q"),
    (lambda g: g.add_edge(1, 2, port="q"), r"node 2 \(swiglu\) has no input port 'q'; its ports: none named"),
    (lambda g: g.add_edge(2, 3, port="v", out="v"), r"node 2 \(swiglu\) has no output 'v'"),
    (lambda g: g.remove_edge(2, 3, key=0), r"port 'k' has no inputs and the node no default input"),
    (lambda g: g.nodes[3].update({"values.agg": "mean"}), r"node 3: port 'values' has no in-edges"),
    (lambda g: g.add_edge(1, 3, port="q", drop=0.1), r"drop and column are not supported"),
    (lambda g: g.add_edge(1, 3, port="q bad"), r"must be a port name"),
])
def test_bad_ports_are_one_line_errors(edit, message):
    with pytest.raises(SpecError, match=message):
        BlockSpec.from_graph(_bad(edit), OPS)


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.add_edge(1, 3, port="x"), "has no input port 'x'"),
    (lambda g: g.nodes[2].update({"agg": "mudd"}) or g.remove_edge(0, 2), "weighs its inputs per token"),
])
def test_bad_wiring_in_a_file_exits_2_with_one_line(edit, message, tmp_path, capsys):
    from connectome.cli import main

    path = tmp_path / "bad.json"
    path.write_text(json.dumps(nx.node_link_data(_bad(edit), edges="links")))
    code = main(["graph", "--family", "decoder", "--pattern", "file", "--pattern-option", f"path={path}",
                 "--growth", str(WIDTH), "--heads", str(HEADS)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_topology_and_every_graph_format_take_a_multigraph_block():
    from connectome.cli.graph import FORMATS
    from connectome.topology import topology_columns

    spec = decoder(_crossed_graph(), sublayers=3)
    assert topology_columns(spec)["topo.block1.edges"] == 7  # 9 edges; pairs 0->3 and 2->3 feed two ports each
    arch = make_arch(family="decoder", pattern="prenorm", growth=WIDTH, heads=HEADS)
    for fmt, render in FORMATS.items():
        assert "port" in render(arch, spec, complexity(spec), None), fmt


@pytest.mark.parametrize("edges", [[(0, 0, 3, "v")], [(0, 2, 3, "k")], [(0, 0, 3)]], ids=str)
def test_a_lesion_into_a_port_zeroes_that_input_of_that_port_only(edges):
    """q <- x0, k <- f2, v <- x0 + a1, r <- f2: cutting x0 -> v leaves v = a1; (0, 0, 3) cuts x0 in q and v."""
    from connectome.analysis.lesion import knockout
    from connectome.errors import ConfigError

    model = _scramble(ConnectomeNet(decoder(_crossed_graph(), sublayers=3))).eval()
    x = _tokens()
    nodes = model.blocks[0].nodes
    a1, f2, a3 = (nodes[str(v)].op for v in (1, 2, 3))
    cut = {(u, p) for _, u, _, *p in edges for p in (p or ["q", "v"])}
    with torch.no_grad():
        h = model.stem(x)
        y1, _ = attention(h, h, h, [a1.norm.weight] * 3, a1.qkv.weight, a1.proj.weight, HEADS)
        y2 = swiglu(h + y1, f2.norm.weight, f2.gate.weight, f2.up.weight, f2.down.weight)
        read = lambda port, sources: sum(t * (0 if (u, port) in cut else 1) for u, t in sources)  # noqa: E731
        q, k, v = read("q", [(0, h)]), read("k", [(2, y2)]), read("v", [(0, h), (1, y1)])
        y3, _ = attention(q, k, v, [a3.port_norms[p].weight for p in "qkv"], a3.qkv.weight, a3.proj.weight, HEADS)
        expected = model.head(y3 + y2)
        with knockout(model, edges):
            out = model(x)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model(x), out)  # restored after the context
    with pytest.raises(ConfigError, match="node 3 does not read node 1 into port 'q'"):
        with knockout(model, [(0, 1, 3, "q")]):
            pass
