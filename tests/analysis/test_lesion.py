"""Lesions: knockout zeroes exactly one source at one reader, leaves the model unchanged after, and the CLI."""
import math

import pandas as pd
import pytest
import torch

from connectome import build_spec, make_arch
from connectome.analysis.lesion import (LesionPlan, bits_per_byte, edge_spans, explicit_reads, knockout, lesion_model,
                                        plot_decoder_lesions, plot_lesions, rise_matrices, span_class)
from connectome.cli import main
from connectome.executor import ConnectomeNet
from connectome.training.trainer import train_trial


def _model(pattern="dense", **kw):
    torch.manual_seed(0)
    model = ConnectomeNet(build_spec(make_arch(pattern=pattern, block_layers=[3, 3], growth=4, classes=4, **kw)))
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("pattern", ["dense", "residual", "partial"])
def test_explicit_reads_compute_the_same_function(pattern):
    model, x = _model(pattern), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        with explicit_reads(model.blocks[0]), explicit_reads(model.blocks[1]):
            assert torch.allclose(model(x), expected, atol=1e-5)


def _reader_input(model, b, v, x):
    seen = {}
    norm = model.blocks[b].nodes[str(v)].op.norm1
    handle = norm.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].clone()))
    with torch.no_grad():
        out = model(x)
    handle.remove()
    return seen["x"], out


def test_knockout_zeroes_only_that_source_at_that_reader():
    model, x = _model(), torch.randn(2, 3, 8, 8)
    before, out = _reader_input(model, 1, 3, x)  # block 2, layer 3 reads [x0 (16), f1 (4), f2 (4)]
    with knockout(model, [(1, 1, 3)]):
        cut, cut_out = _reader_input(model, 1, 3, x)
    width0 = model.blocks[1].spec.nodes[0].width
    lo, hi = width0, width0 + 4
    assert torch.count_nonzero(cut[:, lo:hi]) == 0
    assert torch.equal(cut[:, :lo], before[:, :lo]) and torch.equal(cut[:, hi:], before[:, hi:])
    assert not torch.allclose(cut_out, out)
    after, again = _reader_input(model, 1, 3, x)  # hooks removed, plan restored
    assert torch.equal(again, out) and model.blocks[1].plan[0].base is None


def test_knockout_in_a_residual_sum():
    model, x = _model("residual"), torch.randn(2, 3, 8, 8)
    before, _ = _reader_input(model, 0, 3, x)
    with knockout(model, [(0, 1, 3)]):
        cut, _ = _reader_input(model, 0, 3, x)
    feats = {}
    handle = model.blocks[0].nodes["1"].register_forward_hook(lambda m, a, out: feats.setdefault("f1", out.clone()))
    _reader_input(model, 0, 3, x)
    handle.remove()
    assert torch.allclose(cut, before - feats["f1"], atol=1e-5)  # x0 + f1 + f2 without f1


def test_span_classes():
    assert [span_class(s) for s in (1, 2, 3, 4, 5, 8, 9, 16, 17)] == ["1", "2", "3-4", "3-4", "5-8", "5-8",
                                                                       "9-16", "9-16", "17-32"]
    spans = edge_spans(_model())
    assert spans[(0, 0, 4)] == 4 and spans[(1, 2, 3)] == 1 and len(spans) == 2 * 10


def test_lesion_model_covers_spans_then_edges_within_budget():
    model = _model()
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 4, (32,))
    table = lesion_model(model, x, y, LesionPlan(budget_s=1e9))
    assert (table["kind"] == "edge").sum() == 20 and set(table[table.kind == "span"]["span"]) == {"1", "2", "3-4"}
    # errors in points (100 x the share misclassified), and the rise a knockout causes
    with torch.no_grad():
        wrong = int((model(x).argmax(1) != y).sum())
    assert (table["baseline_val_error_pts"] == 100.0 * wrong / 32).all()
    assert (table["val_error_rise_pts"] == table["val_error_pts"] - table["baseline_val_error_pts"]).all()
    assert table["val_error_pts"].between(0, 100).all() and not {"acc", "baseline_acc", "drop"} & set(table)
    with knockout(model, [(1, 0, 4)]), torch.no_grad():  # block 2's input -> output edge
        cut = 100.0 * int((model(x).argmax(1) != y).sum()) / 32
    row = table[(table.kind == "edge") & (table.block == 2) & (table.src == 0) & (table.dst == 4)]
    assert row["val_error_rise_pts"].item() == pytest.approx(cut - 100.0 * wrong / 32)
    spans_only = lesion_model(model, x, y, LesionPlan(budget_s=0.0))
    assert (spans_only["kind"] == "span").all()


def test_lesion_cli_writes_table_and_figure(tmp_path, capsys):
    trial_dir = tmp_path / "trials" / "tiny"
    config = {"arch": {"block_layers": [2, 2], "growth": 4},
              "data": {"name": "synthetic", "val_size": 64,
                       "synthetic": {"train": 256, "test": 64, "size": 8, "channels": 3, "classes": 4}},
              "train": {"epochs": 1, "batch_size": 32, "threads": 1}, "seed": 0}
    assert train_trial(config, trial_dir=trial_dir)["status"] == "completed"
    assert main(["lesion", str(tmp_path), "--trial", "tiny", "--images", "40", "--budget", "30"]) == 0
    table = pd.read_parquet(tmp_path / "lesion.parquet")
    assert (table["kind"] == "edge").sum() == 2 * 6 and (table["n_images"] == 40).all()
    assert (tmp_path / "figures" / "lesion_tiny.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "baseline val error" in out and " points on 40 images" in out and "acc" not in out
    assert main(["lesion", str(tmp_path), "--trial", "nope"]) == 2


def test_the_lesion_figure_speaks_error_points():
    model = _model()
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    table = lesion_model(model, x, y, LesionPlan(budget_s=1e9, spans=False))
    rises = rise_matrices(table, model)
    assert rises[1][3, 0] == table[(table.block == 2) & (table.src == 0) & (table.dst == 4)]["val_error_rise_pts"].item()
    fig = plot_lesions(rises, [r * 0 for r in rises])
    texts = [ax.get_title() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]
    assert any("val error rise (points)" in t for t in texts) and not any("accuracy" in t for t in texts)
    assert any(t == "validation error rise, points" for t in texts)  # the colour bar's label


# Decoders: edges into named ports, streams of a multi-stream state, validation bits per byte.

def _decoder(pattern, **options):
    torch.manual_seed(0)
    arch = make_arch(family="decoder", pattern=pattern, growth=8, heads=2, sublayers=4, context=4,
                     pattern_options=options)
    model = ConnectomeNet(build_spec(arch))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "join" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def _first_inputs(model, kinds):
    """Node id -> the first input each node of the given aggregation kinds read in one forward pass."""
    seen, hooks = {}, []

    def keep(v):
        def hook(module, args):
            seen[v] = args[0][0].clone()
        return hook

    for key, node in model.blocks[0].nodes.items():
        if node.agg in kinds:
            hooks.append(node.register_forward_pre_hook(keep(int(key))))
    return seen, hooks


@pytest.mark.parametrize("pattern, options, n, kinds", [
    ("hyper-connections", {"streams": 2}, 2, ("hc-read", "hc-write", "stream-sum")),
    ("frac-connections", {"fractions": 4}, 4, ("frac-read", "frac-write"))], ids=str)
def test_a_stream_lesion_zeroes_that_stream_wherever_the_state_is_read(pattern, options, n, kinds):
    model, x = _decoder(pattern, **options), torch.randint(0, 256, (2, 4))
    with torch.no_grad():
        with knockout(model, [], [(0, 1)]):
            seen, hooks = _first_inputs(model, kinds)  # after the knockout's hooks: they see the cut inputs
            model(x)
        for h in hooks:
            h.remove()
    width = model.blocks[0].spec.read_width(model.blocks[0].spec.inputs[max(seen)][0]) // n
    assert len(seen) >= 4 and all(torch.count_nonzero(t[..., width:2 * width]) == 0 for t in seen.values())
    assert all(torch.count_nonzero(t[..., :width]) == t[..., :width].numel() for t in seen.values())
    table = lesion_model(model, x[:, :-1], x[:, 1:], LesionPlan(budget_s=0.0, spans=False))
    assert table["kind"].tolist() == ["stream"] * n and table["stream"].tolist() == list(range(n))
    with knockout(model, [], [(0, 1)]):
        cut = bits_per_byte(model, x[:, :-1], x[:, 1:])
    assert table["val_bpb_rise"].iloc[1] == pytest.approx(cut - bits_per_byte(model, x[:, :-1], x[:, 1:]))


def test_a_decoder_lesions_every_edge_into_every_port_in_bits_per_byte():
    model, x = _decoder("muddformer"), torch.randint(0, 256, (3, 5))
    table = lesion_model(model, x[:, :-1], x[:, 1:], LesionPlan(budget_s=1e9))
    edges = table[table["kind"] == "edge"]
    assert len(edges) == len(model.blocks[0].spec.edges) and set(edges["port"]) == {"", "q", "k", "v", "r"}
    assert len(edges.drop_duplicates(["src", "dst", "port"])) == len(edges)
    base = bits_per_byte(model, x[:, :-1], x[:, 1:])
    with torch.no_grad():
        logits = model(x[:, :-1])
    assert base == pytest.approx(float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()))
                                 / math.log(2))
    row = edges[(edges["port"] == "k")].iloc[0]
    with knockout(model, [(0, int(row.src), int(row.dst), "k")]):
        assert row.val_bpb_rise == pytest.approx(bits_per_byte(model, x[:, :-1], x[:, 1:]) - base)
    assert (table["baseline_val_bpb"] == base).all() and "val_error_pts" not in table
    fig = plot_decoder_lesions(table)
    assert any(t.get_text().endswith(".k") for ax in fig.axes for t in ax.get_yticklabels())


def test_the_lesion_cli_lesions_a_language_model_on_its_validation_windows(tmp_path, capsys):
    from connectome.store.layout import StudyDir, write_trial_config

    sd = StudyDir(tmp_path)
    files = sd.trial("lm")
    arch = {"family": "decoder", "pattern": "hyper-connections", "growth": 8, "heads": 2, "sublayers": 2,
            "context": 4, "pattern_options": {"streams": 2}}
    write_trial_config(files, {"arch": arch, "data": {"name": "text", "corpus": "generated", "eval_windows": 6},
                               "train": {"steps": 2}, "seed": 0}, study="lm")
    model = ConnectomeNet(build_spec(make_arch(**arch)))
    files.spec.write_text(model.spec.to_json())
    torch.save(model.state_dict(), files.model)
    assert main(["lesion", str(tmp_path), "--trial", "lm", "--budget", "100"]) == 0
    table = pd.read_parquet(tmp_path / "lesion.parquet")
    assert (table["n_windows"] == 6).all() and (table["kind"] == "stream").sum() == 2
    assert (table["kind"] == "edge").sum() == len(model.blocks[0].spec.edges)
    out = capsys.readouterr().out
    assert "bits per byte on 6 windows" in out and "2 streams" in out
    assert (tmp_path / "figures" / "lesion_lm.png").stat().st_size > 1000
