"""Learned wiring as a picture: the table equals the joins' parameters, the figure, the report's choice, the CLI."""
from collections import Counter
from pathlib import Path

import pytest
import torch

from connectome import build_model, make_arch
from connectome.analysis import learned_wiring
from connectome.analysis.document import Document
from connectome.analysis.learned_wiring import (block_sentences, describe_start, dynamic_joins, edge_weight_table,
                                                has_learned_joins, learned_wiring_section, plot_learned_wiring)
from connectome.analysis.figures import save_figure
from connectome.analysis.results import load
from connectome.cli import main
from connectome.executor import ConnectomeNet
from connectome.joins import JOINS, Join
from connectome.store.layout import StudyDir, write_trial_config, write_trial_result
from wiring_graphs import block, join_graph, network, wiring_graph


def _decoder(pattern="denseformer", **options):
    arch = make_arch(family="decoder", pattern=pattern, growth=8, heads=2, sublayers=6, context=4,
                     pattern_options=options)
    return build_model(arch)


def _weighted(model):
    """(block, target) -> the Weighted join, read straight from the modules."""
    return {(b, int(k)): node.join for b, blk in enumerate(model.blocks, start=1)
            for k, node in blk.nodes.items() if node.agg == "weighted"}


def _set_weights(model, seed=0, scale=1.0):
    """Hand-set every connection weight to a seeded random value (what training would leave)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for join in _weighted(model).values():
            join.weight.copy_(scale * torch.randn(join.weight.shape, generator=gen))
    return model


def test_the_table_holds_every_weighted_parameter_at_its_source():
    model = _set_weights(_decoder(dilation=1))
    table = edge_weight_table(model)
    expected = {}
    for (b, v), join in _weighted(model).items():
        for i, edge in enumerate(model.blocks[b - 1].spec.inputs[v]):
            expected[(b, v, edge.src)] = join.weight[i].item()
    got = {(r.block, r.target, r.source): r.weight for r in table.itertuples()}
    assert got == pytest.approx(expected) and len(got) == 3 + 4 + 2  # denseformer: 3 averages over Y_0..Y_i
    # initial: one-hot on the nearest output (DenseFormer starts as prenorm); change = weight - initial
    nearest = {(b, v): max(e.src for e in model.blocks[b - 1].spec.inputs[v]) for b, v in _weighted(model)}
    assert all(r.initial == (1.0 if r.source == nearest[(r.block, r.target)] else 0.0) for r in table.itertuples())
    assert (table["change"] == table["weight"] - table["initial"]).all()
    assert describe_start(table).startswith("one-hot")


def test_an_untrained_network_shows_no_change_and_the_sentence_says_so():
    table = edge_weight_table(_decoder())
    assert (table["change"] == 0).all()
    assert block_sentences(table) == ["Block 1: none of its 9 learned weights moved from its start."]


def test_positive_weights_are_read_as_the_sum_applies_them_and_gates_are_dynamic():
    graph = wiring_graph()  # a gated join, a weighted (uniform) layer and a weighted (nearest) output
    sig = join_graph("weighted", weights="sigmoid")
    model = ConnectomeNet(network(block(graph), block(sig)))
    with torch.no_grad():
        model.blocks[1].nodes["2"].join.weight.copy_(torch.tensor([2.0, -1.0]))
    table = edge_weight_table(model)
    second = table[table["block"] == 2].sort_values("source")
    assert second["weight"].tolist() == pytest.approx(torch.sigmoid(torch.tensor([2.0, -1.0])).tolist())
    assert second["initial"].tolist() == [0.5, 0.5]
    assert sorted(table.loc[table["block"] == 1, "target"].unique()) == [3, 5]
    assert dynamic_joins(model) == Counter({"gated": 1})
    assert describe_start(table) == ("1/2 on each in-edge (nodes 2, 3); "
                                     "one-hot: 1 on the nearest (highest-id) source, 0 on the others (node 5)")
    assert has_learned_joins(model.spec) and not has_learned_joins(_decoder("prenorm").spec)


def test_every_kind_with_edge_weights_starts_them_at_fixed_values():
    """The figure's white is the start: a kind's initial edge weights must not be a random draw."""
    kinds = [name for name, cls in JOINS.items() if cls.edge_weights is not Join.edge_weights]
    assert "weighted" in kinds and "gated" not in kinds
    for name in kinds:
        draws = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            attrs = {"weights": "uniform"} if name == "weighted" else {}
            draws.append(edge_weight_table(ConnectomeNet(network(block(join_graph(name, **attrs)))))["initial"])
        assert draws[0].tolist() == draws[1].tolist()


def test_the_figure_has_one_panel_per_block(tmp_path):
    model = ConnectomeNet(network(block(wiring_graph()), block(join_graph("weighted", weights="ones"))))
    _set_weights(model)
    fig = plot_learned_wiring(edge_weight_table(model), title="t")
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 2
    png, svg = save_figure(fig, tmp_path / "wiring")
    assert png.stat().st_size > 10_000 and svg.stat().st_size > 10_000


# A results directory where validation and test disagree: the report must choose on validation.
TRIALS = {  # trial id -> (pattern, validation accuracy, test error)
    "denseformer-val": ("denseformer", 0.60, 0.45),
    "denseformer-test": ("denseformer", 0.50, 0.30),
    "prenorm-0": ("prenorm", 0.70, 0.20),
}


def _results(root: Path) -> Path:
    sd = StudyDir(root / "wired")
    sd.trials.mkdir(parents=True)
    sd.stamp(study="wired")
    for seed, (trial_id, (pattern, val, test)) in enumerate(TRIALS.items()):
        files = sd.trial(trial_id)
        write_trial_config(files, {"arch": {"pattern": pattern}, "seed": seed}, study="wired")
        row = {"trial_id": trial_id, "pattern": pattern, "seed": seed, "status": "completed", "study": "wired",
               "best_val_acc": val, "test_error": test, "test_acc": 1 - test, "params": 1000}
        sd.record(write_trial_result(files, row, []))
        model = _decoder(pattern)
        if pattern == "denseformer":
            _set_weights(model, seed=seed, scale=10.0 * (seed + 1))  # tell the trials apart by their weights
        files.spec.write_text(model.spec.to_json())
        torch.save(model.state_dict(), files.model)
    return sd.root


def test_the_report_draws_each_learned_pattern_from_its_trial_chosen_on_validation(tmp_path):
    path = _results(tmp_path)
    doc = Document()
    learned_wiring_section(doc, load(path), path, refused=[])
    text = doc.to_markdown(path)
    assert "`denseformer-val`" in text and "denseformer-test" not in text and "prenorm" not in text
    assert "validation error" in text and "one-hot" in text and text.count("Block 1:") == 1
    assert (path / "figures" / "learned_wiring_denseformer-val.png").stat().st_size > 10_000
    assert not list((path / "figures").glob("*prenorm*"))


def test_a_chosen_model_that_is_not_weights_is_refused_in_one_line(tmp_path):
    path = _results(tmp_path)
    StudyDir(path).trial("denseformer-val").model.write_bytes(b"not a weights file")
    doc, refused = Document(), []
    learned_wiring_section(doc, load(path), path, refused=refused)
    text = doc.to_markdown(path)
    assert "No learned-wiring figure: " in text and len(refused) == 1 and "refused" in refused[0]
    assert not (path / "figures").exists()


def test_a_study_without_learned_weights_gets_no_section(tmp_path):
    path = _results(tmp_path)
    for trial_id in ("denseformer-val", "denseformer-test"):
        StudyDir(path).trial(trial_id).model.unlink()
    doc = Document()
    learned_wiring_section(doc, load(path), path, refused=[])
    assert doc.to_markdown(path).strip() == "" and not (path / "figures").exists()


def test_the_wiring_command_prints_the_table_and_writes_the_figure(tmp_path, capsys, monkeypatch):
    path = _results(tmp_path)
    assert main(["wiring", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trial denseformer-val: 9 learned connection weights") and "Block 1:" in out
    assert (path / "figures" / "learned_wiring_denseformer-val.png").stat().st_size > 10_000
    drawn = []
    monkeypatch.setattr(learned_wiring, "save_figure", lambda fig, stem: drawn.append(stem) or [stem])
    assert main(["wiring", str(path), "--trial", "denseformer-test"]) == 0
    assert "trial denseformer-test" in capsys.readouterr().out and drawn[0].name == "learned_wiring_denseformer-test"


@pytest.mark.parametrize("argv, message", [
    (["--trial", "nope"], "no trial 'nope' in"),
    (["--trial", "prenorm-0"], "trial prenorm-0 has no learned connection weights: its joins are sum ("),
    (["--trial", "../x"], "is not a trial id"),
])
def test_the_wiring_command_refuses_bad_input_in_one_line(tmp_path, capsys, argv, message):
    path = _results(tmp_path)
    assert main(["wiring", str(path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_wiring_command_says_when_no_trial_has_learned_weights(tmp_path, capsys):
    path = _results(tmp_path)
    for trial_id in ("denseformer-val", "denseformer-test"):
        StudyDir(path).trial(trial_id).model.unlink()
    assert main(["wiring", str(path)]) == 2
    assert "no completed trial of" in capsys.readouterr().err


# Per-token weights: recorded over validation inputs, summarised per edge as mean and spread.

def _rms(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def _captured_inputs(model, kind):
    """(block, node, port) -> the inputs each join of `kind` read in the next forward pass (a list per call)."""
    seen = {}
    hooks = [join.register_forward_pre_hook(lambda j, args, key=(b, v, p): seen.setdefault(key, []).append(args[0]))
             for b, v, p, join in learned_wiring.all_joins(model) if join.kind == kind]
    return seen, hooks


@pytest.mark.parametrize("pattern, kind", [("attnres", "depth-attention"), ("muddformer", "mudd")])
def test_per_token_weights_are_the_mean_and_spread_of_a_hand_computation(pattern, kind):
    model = _decoder(pattern)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("query") or ".w2." in name:
                p.normal_()
    batches = [torch.randint(0, 256, (3, 4)), torch.randint(0, 256, (2, 4))]
    seen, hooks = _captured_inputs(model, kind)
    with torch.no_grad():
        for x in batches:
            model(x)
    for h in hooks:
        h.remove()
    table = learned_wiring.dynamic_weight_table(model, batches)
    assert set(table["kind"]) == {kind} and (table["tokens"] == 5 * 4).all()
    for (b, v, port), calls in seen.items():
        join = dict(((bb, vv, pp), j) for bb, vv, pp, j in learned_wiring.all_joins(model))[(b, v, port)]
        if kind == "depth-attention":  # alpha_j = softmax_j(w . RMSNorm(x_j))
            w = [torch.stack([(_rms(x) * join.query).sum(-1) for x in xs], -1).softmax(-1) for xs in calls]
        else:  # GELU(RMSNorm(x_cur) W1) W2 + a
            w = [torch.nn.functional.gelu(_rms(xs[-1]) @ join.w1.weight.T) @ join.w2.weight.T + join.prior
                 for xs in calls]
        w = torch.cat([t.flatten(0, -2) for t in w]).detach()  # (positions, n)
        rows = table[(table["target"] == v) & (table["port"] == port)]
        sources = [e.src for e in model.blocks[b - 1].spec.port_inputs(v)[port]]
        assert rows["source"].tolist() == sources
        assert rows["mean"].tolist() == pytest.approx(w.mean(0).tolist(), abs=1e-6)
        assert rows["std"].tolist() == pytest.approx(w.std(0, unbiased=False).tolist(), abs=1e-5)
    if kind == "mudd":  # every attention after the first has four ports, the head one more join
        assert set(table["port"]) == {"q", "k", "v", "r", ""}
    assert learned_wiring.dynamic_joins(model) == Counter()  # drawn now, so not listed as left out


def test_static_joins_keep_their_table_and_have_no_per_token_rows():
    model = _set_weights(_decoder(dilation=1))
    before = edge_weight_table(model)
    tokens = learned_wiring.dynamic_weight_table(model, [torch.randint(0, 256, (2, 4))])
    assert tokens.empty and edge_weight_table(model).equals(before) and len(before) == 9
    gated = ConnectomeNet(network(block(wiring_graph())))
    assert learned_wiring.dynamic_joins(gated) == Counter({"gated": 1})  # per channel: named, not drawn
    assert learned_wiring.dynamic_joins(_decoder("hyper-connections")) == Counter({"hc-read": 6, "hc-write": 6})


def _text_trial(root: Path, pattern: str) -> Path:
    """A results folder with one trained-looking decoder trial on the generated corpus."""
    sd = StudyDir(root / "lm")
    sd.trials.mkdir(parents=True)
    sd.stamp(study="lm")
    files = sd.trial("t0")
    arch = {"family": "decoder", "pattern": pattern, "growth": 8, "heads": 2, "sublayers": 6, "context": 4}
    write_trial_config(files, {"arch": arch, "data": {"name": "text", "corpus": "generated", "eval_windows": 8},
                               "train": {"steps": 2}, "seed": 0}, study="lm")
    row = {"trial_id": "t0", "pattern": pattern, "seed": 0, "status": "completed", "study": "lm",
           "best_val_acc": 0.5, "test_error": 0.5, "test_acc": 0.5, "params": 1000}
    sd.record(write_trial_result(files, row, []))
    model = _decoder(pattern)
    files.spec.write_text(model.spec.to_json())
    torch.save(model.state_dict(), files.model)
    return sd.root


def test_the_wiring_command_draws_per_token_weights_over_the_validation_windows(tmp_path, capsys):
    path = _text_trial(tmp_path, "attnres")
    assert main(["wiring", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trial t0: 0 learned connection weights, 27 per-token ones") and "(per token)" in out
    assert "32 validation positions" in out  # 8 windows x context 4
    assert (path / "figures" / "learned_wiring_dynamic_t0.png").stat().st_size > 10_000
    assert not (path / "figures" / "learned_wiring_t0.png").exists()
    doc = Document()
    learned_wiring_section(doc, load(path), path, refused=[])
    text = doc.to_markdown(path)
    assert "standard deviation" in text and "(per token)" in text


def test_static_port_weights_are_rows_of_their_port():
    model = _decoder("muddformer", dynamic=False)
    ports = {(b, v, p): j for b, v, p, j in learned_wiring.all_joins(model) if p and j.kind == "weighted"}
    with torch.no_grad():
        for j in ports.values():
            j.weight.normal_()
    table = edge_weight_table(model)
    assert {p for *_, p in ports} == {"q", "k", "v", "r"} and set(table["port"]) == {"q", "k", "v", "r", ""}
    for (b, v, p), join in ports.items():
        rows = table[(table["target"] == v) & (table["port"] == p)]
        assert rows["source"].tolist() == [e.src for e in model.blocks[b - 1].spec.port_inputs(v)[p]]
        assert rows["weight"].tolist() == pytest.approx(join.weight.tolist())
    (_, matrix), = learned_wiring.block_matrices(table, "weight")
    assert list(matrix.index)[:4] == ["4.k", "4.q", "4.r", "4.v"] and list(matrix.index)[-1] == "10"
    top = table.loc[table["change"].abs().idxmax()]
    reader = f"node {int(top.target)}" + (f" port {top.port}" if top.port else "")
    assert f"the largest change is {reader}'s weight" in block_sentences(table)[0]
    assert describe_start(table) == "one-hot: 1 on the nearest (highest-id) source, 0 on the others"
