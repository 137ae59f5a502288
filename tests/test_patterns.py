"""Every registered pattern builds a valid block; each pattern's wiring is what it claims."""
import json

import networkx as nx
import pytest

from connectome.costs import OP_KINDS
from connectome.errors import ConfigError, SpecError
from connectome.patterns import PATTERNS, BlockContext, block_graph, get_pattern
from connectome.spec import BlockSpec

CTX = BlockContext(n_layers=6, in_channels=16, growth=12, op="conv3x3", index=0)
OPTIONS = {"file": None}  # the file pattern is covered by its own tests


@pytest.mark.parametrize("name", sorted(set(PATTERNS) - set(OPTIONS)))
def test_every_pattern_builds_a_valid_block(name):
    ctx = CTX if not PATTERNS[name].fixed_width else BlockContext(6, 12, 12, "conv3x3", 0)
    block = BlockSpec.from_graph(block_graph(name, ctx), frozenset(OP_KINDS.costs))
    assert block.n_layers == PATTERNS[name].layer_nodes(6)  # 6, but a fractal's depth counts a path
    assert block.nodes[0].width == ctx.in_channels
    for v in range(1, len(block.nodes)):
        assert block.inputs[v], f"node {v} reads nothing"


def _preds(name, ctx=CTX, **opts):
    g = block_graph(name, ctx, **opts)
    return {v: sorted(g.predecessors(v)) for v in g.nodes if v}, g


def test_dense_reads_every_earlier_node():
    preds, g = _preds("dense")
    assert all(preds[v] == list(range(v)) for v in preds)
    assert g.number_of_edges() == 7 * 8 // 2


def test_plain_is_a_chain():
    preds, _ = _preds("plain")
    assert all(preds[v] == [v - 1] for v in preds)


def test_residual_sums_all_earlier_nodes():
    ctx = BlockContext(n_layers=4, in_channels=12, growth=12, op="conv3x3", index=0)
    preds, g = _preds("residual", ctx)
    assert preds[3] == [0, 1, 2]
    assert {g.nodes[v]["agg"] for v in preds} == {"sum"}


def test_residual_rejects_unequal_widths():
    with pytest.raises(SpecError, match="unequal widths"):
        BlockSpec.from_graph(block_graph("residual", CTX))


def test_sparse_uses_exponential_offsets():
    ctx = BlockContext(n_layers=9, in_channels=16, growth=12, op="conv3x3", index=0)
    preds, _ = _preds("sparse", ctx)
    assert preds[9] == [1, 5, 7, 8]  # offsets 1, 2, 4, 8
    assert preds[10] == [2, 6, 8, 9]


@pytest.mark.parametrize("m", [16, 20, 40, 64])
def test_partial_reads_exactly_the_m_most_recent_channels(m):
    ctx = BlockContext(n_layers=6, in_channels=16, growth=12, op="conv3x3", index=0)
    block = BlockSpec.from_graph(block_graph("partial", ctx, m=m))
    for v in range(1, 7):
        available = 16 + (v - 1) * 12
        assert block.input_width(v) == min(m, available)
        concat = [(0, c) for c in range(16)] + [(u, c) for u in range(1, v) for c in range(12)]
        expected = concat[-min(m, available):]
        read = [(e.src, c) for e in block.inputs[v]
                for c in range(*(e.window or (0, block.nodes[e.src].width)))]
        assert read == expected
    assert block.out_channels == 16 + 6 * 12  # the output concatenates everything


def test_partial_default_window_is_the_block_input():
    block = BlockSpec.from_graph(block_graph("partial", CTX))
    assert {block.input_width(v) for v in range(1, 7)} == {16}
    assert block.inputs[2][0].window == (12, 16)  # x1 (12 channels) + the last 4 of x0
    assert [e.src for e in block.inputs[2]] == [0, 1]


@pytest.mark.parametrize("m", [0, -3, 16 + 5 * 12 + 1])
def test_partial_rejects_impossible_m(m):
    with pytest.raises(SpecError, match=f"m={m} is impossible"):
        block_graph("partial", CTX, m=m)


@pytest.mark.parametrize("model", ["er", "ws", "ba"])
def test_random_graphs_are_seeded_acyclic_and_connected(model):
    ctx = BlockContext(n_layers=10, in_channels=16, growth=8, op="conv3x3", index=0)
    a = block_graph("random", ctx, model=model, seed=3)
    b = block_graph("random", ctx, model=model, seed=3)
    c = block_graph("random", ctx, model=model, seed=4)
    assert sorted(a.edges) == sorted(b.edges)
    assert sorted(a.edges) != sorted(c.edges)
    assert all(u < v for u, v in a.edges)
    BlockSpec.from_graph(a)


def test_random_rejects_unknown_model():
    with pytest.raises(ConfigError, match="known: ba, er, ws"):
        block_graph("random", CTX, model="smallworld")


def test_unknown_pattern_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        get_pattern("densest")
    assert "densest" in str(err.value) and "dense, file, fractal, highway, partial" in str(err.value)


def _user_graph():
    g = nx.DiGraph()
    g.add_edges_from([(0, 1), (0, 2), (1, 3), (2, 3)])
    return g


def test_file_pattern_reads_graphml_and_adds_the_output(tmp_path):
    path = tmp_path / "g.graphml"
    g = _user_graph()
    g.edges[0, 2]["window"] = "4:16"
    nx.write_graphml(g, path)
    block = BlockSpec.from_graph(block_graph("file", CTX, path=str(path)))
    assert block.n_layers == 3
    assert [e.src for e in block.inputs[4]] == [3]
    assert block.inputs[2][0].window == (4, 16)


def test_file_pattern_reads_node_link_json(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(nx.node_link_data(_user_graph(), edges="links")))
    block = BlockSpec.from_graph(block_graph("file", CTX, path=str(path)))
    assert block.input_width(3) == 24


def test_file_pattern_rejects_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        block_graph("file", CTX, path=str(tmp_path / "nope.graphml"))
    bad = tmp_path / "bad.graphml"
    bad.write_text("<graphml><oops")
    with pytest.raises(ConfigError, match="cannot read graph file"):
        block_graph("file", CTX, path=str(bad))


@pytest.mark.parametrize("node_width, window, expected", [
    ("abc", None, "node 2 width must be a whole number of channels, got 'abc'"),
    (2.5, None, "node 2 width must be a whole number of channels, got 2.5"),
    (True, None, "node 2 width must be a whole number"),
    (None, "a:b", "edge 0->2 window must be a whole number of channels, got 'a'"),
    (None, "1:2:3", "edge 0->2 window must be 'lo:hi'"),
    (None, [0.5, 3], "edge 0->2 window must be a whole number of channels, got 0.5"),
])
def test_file_pattern_rejects_non_integer_widths_and_windows(tmp_path, node_width, window, expected):
    g = _user_graph()
    if node_width is not None:
        g.nodes[2]["width"] = node_width
    if window is not None:
        g.edges[0, 2]["window"] = window
    path = tmp_path / "g.json"
    path.write_text(json.dumps(nx.node_link_data(g, edges="links")))
    with pytest.raises(SpecError) as err:
        block_graph("file", CTX, path=str(path))
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_file_pattern_accepts_integer_text_and_whole_floats(tmp_path):
    g = _user_graph()
    g.nodes[2]["width"] = 8.0
    g.edges[0, 2]["window"] = ["4", 16.0]
    path = tmp_path / "g.json"
    path.write_text(json.dumps(nx.node_link_data(g, edges="links")))
    block = BlockSpec.from_graph(block_graph("file", CTX, path=str(path)))
    assert block.nodes[2].width == 8 and block.inputs[2][0].window == (4, 16)


@pytest.mark.parametrize("options, expected", [
    ({"model": "ba", "m": 0}, "needs an integer m >= 1"),
    ({"model": "ba", "m": -3}, "needs an integer m >= 1"),
    ({"model": "ba", "m": 1.5}, "needs an integer m >= 1"),
])
def test_random_rejects_impossible_model_parameters(options, expected):
    with pytest.raises(SpecError, match=expected):
        block_graph("random", CTX, **options)


def test_random_ba_m0_through_the_cli(capsys):
    from connectome.cli import main

    assert main(["graph", "--pattern", "random", "--pattern-option", "model=ba",
                 "--pattern-option", "m=0", "--depth", "22"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "m >= 1" in err


def test_graphml_entity_bomb_is_refused(tmp_path):
    entities = ['<!ENTITY e0 "lolololololololololol">'] + [
        f'<!ENTITY e{i} "{("&e" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    path = tmp_path / "bomb.graphml"
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE g [' + "\n".join(entities) + ']>\n'
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><key id="o" for="node" attr.name="op" '
        'attr.type="string"/><graph edgedefault="directed"><node id="0"><data key="o">&e9;</data></node>'
        '<node id="1"/><edge source="0" target="1"/></graph></graphml>')
    with pytest.raises(ConfigError, match="cannot read graph file .*amplification"):
        block_graph("file", CTX, path=str(path))


@pytest.mark.parametrize("s, expected", [
    (1, {1: [0], 2: [1], 3: [2], 4: [3], 5: [0, 1, 2, 3, 4]}),
    (2, {1: [0], 2: [0, 1], 3: [1, 2], 4: [2, 3], 5: [0, 1, 2, 3, 4]}),
    (3, {1: [0], 2: [0, 1], 3: [0, 1, 2], 4: [1, 2, 3], 5: [0, 1, 2, 3, 4]}),
])
def test_span_keeps_only_edges_within_reach_and_the_output_reads_everything(s, expected):
    ctx = BlockContext(n_layers=4, in_channels=16, growth=12, op="conv3x3", index=0)
    preds, _ = _preds("span", ctx, max_span=s)
    assert preds == expected


@pytest.mark.parametrize("s", [4, 5, 100, None])
def test_span_at_or_beyond_the_block_length_is_the_dense_block(s):
    ctx = BlockContext(n_layers=4, in_channels=16, growth=12, op="conv3x3", index=0)
    assert sorted(block_graph("span", ctx, max_span=s).edges) == sorted(block_graph("dense", ctx).edges)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_span_rejects_a_reach_that_is_not_a_positive_whole_number(bad):
    with pytest.raises(SpecError, match="max_span must be a whole number of layers >= 1"):
        block_graph("span", CTX, max_span=bad)


def test_span_parameters_grow_with_reach_up_to_dense():
    from connectome.builder import build_spec
    from connectome.architecture import make_arch
    from connectome.complexity import complexity

    def params(**options):
        return complexity(build_spec(make_arch(depth=22, growth=6, **options))).params

    curve = [params(pattern="span", pattern_options={"max_span": s}) for s in (1, 2, 4, 6)]
    assert curve == sorted(curve) and len(set(curve)) == 4
    assert curve[-1] == params(pattern="dense")  # 6 layers per block: span 6 is dense
    # what the cut edges remove: per dropped input channel, a 3x3 conv's 9*growth weights and BN's scale and shift
    dense, chain = (build_spec(make_arch(depth=22, growth=6, pattern=p, pattern_options=o))
                    for p, o in (("dense", {}), ("span", {"max_span": 1})))
    assert [chain.blocks[0].input_width(v) for v in range(1, 7)] == [16, 6, 6, 6, 6, 6]
    assert chain.blocks[0].out_channels == dense.blocks[0].out_channels == 16 + 6 * 6
    dropped = sum(bd.input_width(v) - bc.input_width(v) for bd, bc in zip(dense.blocks, chain.blocks) for v in range(1, 7))
    assert complexity(dense).params - complexity(chain).params == dropped * (9 * 6 + 2)


def test_span_is_dense_by_canonical_hash_once_it_reaches_every_layer():
    from connectome.builder import build_spec
    from connectome.architecture import make_arch

    def spec(**options):
        return build_spec(make_arch(depth=22, growth=6, **options))

    assert spec(pattern="span", pattern_options={"max_span": 6}).canonical_hash == spec(pattern="dense").canonical_hash
    assert spec(pattern="span", pattern_options={"max_span": 5}).canonical_hash != spec(pattern="dense").canonical_hash


# The wiring language in graph files: every kind and attribute round-trips through GraphML and JSON.
from pathlib import Path  # noqa: E402

from connectome.patterns import from_file  # noqa: E402
from wiring_graphs import KINDS, join_graph, wiring_graph  # noqa: E402

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "graphs").glob("*.*[ln]"))


def _write(graph, path):
    if path.suffix == ".json":
        path.write_text(json.dumps(nx.node_link_data(graph, edges="links")))
    else:
        nx.write_graphml(graph, path)
    return str(path)


def _file_block(path, in_channels=4):
    ctx = BlockContext(n_layers=0, in_channels=in_channels, growth=4, op="conv3x3", index=0)
    return BlockSpec.from_graph(from_file(ctx, path=path), frozenset(OP_KINDS.costs))


@pytest.mark.parametrize("suffix", [".graphml", ".json"])
@pytest.mark.parametrize("name, agg, attrs", [*KINDS, ("every-attribute", None, None)],
                         ids=[k[0] for k in KINDS] + ["every-attribute"])
def test_every_kind_round_trips_through_graph_files(name, agg, attrs, suffix, tmp_path):
    graph = wiring_graph() if agg is None else join_graph(agg, **attrs)
    spec = BlockSpec.from_graph(graph, frozenset(OP_KINDS.costs))
    exported = spec.to_graph(text_windows=True)
    assert _file_block(_write(exported, tmp_path / f"block{suffix}")) == spec


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_graph_files_build(path):
    spec = _file_block(str(path), in_channels=99)
    assert spec.in_channels == 16  # the file's node 0 width wins over the network's
    assert {n.agg for n in spec.nodes} - {"concat"}  # each example uses a kind beyond concat


def test_a_graph_file_with_a_bad_drop_names_the_file(tmp_path):
    path = _write(join_graph("sum", edge_attrs={(1, 2): {"drop": 1.0}}), tmp_path / "bad.json")
    with pytest.raises(SpecError, match=r"bad.json: edge 1->2 drop must be a probability in \[0, 1\), got 1.0"):
        block_graph("file", BlockContext(0, 4, 4, "conv3x3", 0), path=path)


def test_fractal_block_is_larsson_et_al_s_expansion():
    # C = 3 columns: the deepest has 4 layers, the middle 2, the shallowest 1; joins average the
    # columns meeting at depths 2 (two) and 4 (three: the block output), labelled for drop-path
    ctx = BlockContext(n_layers=4, in_channels=16, growth=12, op="conv3x3", index=0)
    block = BlockSpec.from_graph(block_graph("fractal", ctx, drop=0.15, global_drop=0.5), frozenset(OP_KINDS.costs))
    assert block.n_layers == 7 and block.global_drop == 0.5
    joins = {n.id: [(e.src, e.column, e.drop) for e in block.inputs[n.id]] for n in block.nodes if n.agg == "mean"}
    assert joins == {4: [(2, 2, 0.15), (3, 3, 0.15)], 9: [(6, 1, 0.15), (7, 2, 0.15), (8, 3, 0.15)]}
    assert [e.src for e in block.inputs[6]] == [0] and [e.src for e in block.inputs[7]] == [4]
    assert block.output == 9 and block.out_channels == 12


def test_highway_layers_gate_their_op_against_the_carried_input():
    ctx = BlockContext(n_layers=2, in_channels=12, growth=12, op="conv3x3", index=0)
    block = BlockSpec.from_graph(block_graph("highway", ctx, gate_bias=-3.0), frozenset(OP_KINDS.costs))
    assert block.n_layers == 2 and [n.agg for n in block.nodes] == ["concat", "concat", "gated", "concat", "gated",
                                                                      "concat"]
    assert [(e.src, e.carry) for e in block.inputs[2]] == [(0, True), (1, False)]
    assert [(e.src, e.carry) for e in block.inputs[4]] == [(2, True), (3, False)]
    assert dict(block.nodes[4].options) == {"gate_bias": -3.0, "gate_kernel": 3}
