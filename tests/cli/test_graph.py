"""`connectome graph`: every format, and one-line errors for bad input."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from connectome.aggregations import AGGREGATIONS
from connectome.architecture import make_arch
from connectome.builder import build_spec
from connectome.cli import main
from connectome.complexity import complexity
from connectome.patterns import PATTERNS


def run(capsys, *argv):
    code = main(["graph", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_params_and_flops(capsys):
    code, out, _ = run(capsys, "--preset", "densenet121", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["params"] == 7_978_856 and data["flops"] > 2e9


def test_flags_cover_the_paper_options(capsys):
    code, out, _ = run(capsys, "--depth", "100", "--growth", "12", "--bottleneck", "--compression", "0.5",
                       "--format", "json")
    assert json.loads(out)["params"] == 769_162
    code, out, _ = run(capsys, "--block-layers", "6,12,24,16", "--growth", "32", "--bottleneck",
                       "--compression", "0.5", "--stem", "imagenet", "--classes", "1000", "--format", "json")
    assert json.loads(out)["params"] == 7_978_856
    code, out, _ = run(capsys, "--pattern", "partial", "--m", "16,160,304", "--in-channels", "1",
                       "--input-size", "28", "--format", "json")
    assert json.loads(out)["input_size"] == [1, 28, 28]


def test_text_shows_edges_and_in_degree(capsys):
    code, out, _ = run(capsys, "--pattern", "partial", "--depth", "10", "--growth", "4")
    assert "params" in out and "in-degree" in out
    assert "2 <- 0[12:16], 1   (concat 16 ch)" not in out  # growth 4: 1 reads 16, 2 reads 0[4:16] + 1
    assert "2 <- 0[4:16], 1   (concat 16 ch)" in out


def test_dot_and_graphml_parse(capsys):
    _, dot, _ = run(capsys, "--pattern", "sparse", "--depth", "13", "--format", "dot")
    assert dot.startswith('digraph "sparse"') and dot.rstrip().endswith("}")
    _, graphml, _ = run(capsys, "--pattern", "partial", "--depth", "10", "--format", "graphml")
    root = ET.fromstring(graphml)
    assert root.tag.endswith("graphml")


@pytest.mark.parametrize("argv, message", [
    (["--pattern", "densest"], "unknown pattern 'densest'; known: dense, file"),
    (["--depth", "41"], "depth 41 does not fit 3 blocks"),
    (["--pattern", "partial", "--m", "0"], "m=0 is impossible"),
    (["--growth", "0"], "growth must be a positive"),
    (["--preset", "resnet50"], "unknown preset 'resnet50'"),
    (["--pattern", "file", "--pattern-option", "path=/nonexistent.graphml"], "does not exist"),
    (["--preset", "fractalnet-21", "--block-dropout", "0.1,0.2"], "block_dropout has 2 rates but the network has 5"),
    (["--preset", "fractalnet-21", "--block-dropout", "0,0,0,0,1"], "block_dropout needs one rate in [0, 1)"),
    (["--preset", "resnet-sd-110", "--stochastic-depth", "1.0"], "stochastic_depth: Input should be less than 1"),
    (["--pattern", "fractal", "--depth", "13", "--pattern-option", "drop=1.5"], "drop must be a probability in [0, 1)"),
])
def test_bad_input_is_one_line_without_traceback(capsys, argv, message):
    code, _, err = run(capsys, *argv)  # an exception escaping main would fail the test here
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1


def test_bad_input_from_the_real_executable_exits_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "connectome", "graph", "--pattern", "densest"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown pattern 'densest'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("preset, millions", [
    ("preact-resnet-164", 1.7), ("resnet-110", 1.7), ("densenet-40-12", 1.0), ("densenet-100-24", 27.2),
    ("highway-19", 2.3), ("wrn-16-4-dropout", 2.7)])
def test_presets_give_table_1_params_to_the_papers_rounding(capsys, preset, millions):
    code, out, _ = run(capsys, "--preset", preset, "--format", "json")
    assert code == 0 and round(json.loads(out)["params"] / 1e6, 1) == millions


def test_resnet_text_names_its_stage_transitions(capsys):
    code, out, _ = run(capsys, "--preset", "resnet-110")
    assert "transition 1: 16 -> 32 channels, basic unit, stride 2, zero-padded identity shortcut" in out


SHIPPED_PATTERNS = sorted(p for p in PATTERNS if p != "file")


def export_blocks(capsys, tmp_path, argv: list[str], n_blocks: int, fmt: str) -> list[str]:
    """`connectome graph ARGV --block i --format FMT` for every block, each into its own file."""
    paths = []
    for i in range(1, n_blocks + 1):
        assert main(["graph", *argv, "--block", str(i), "--format", fmt]) == 0
        path = tmp_path / f"block{i}.{fmt}"
        path.write_text(capsys.readouterr().out)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("fmt", ["graphml", "json"])
@pytest.mark.parametrize("pattern", SHIPPED_PATTERNS)
def test_block_export_round_trips_through_the_file_pattern(pattern, fmt, capsys, tmp_path):
    argv = ["--pattern", pattern, "--block-layers", "3,4", "--growth", "4"]
    original = build_spec(make_arch(pattern=pattern, block_layers=[3, 4], growth=4))
    paths = export_blocks(capsys, tmp_path, argv, 2, fmt)
    # Sum-aggregating blocks need the stem as wide as a layer; the file pattern cannot guess it.
    stem = {"stem_channels": original.stem_channels}
    imported = build_spec(make_arch(pattern="file", pattern_options={"path": paths}, growth=4, **stem))
    assert imported.graph_hash == original.graph_hash
    assert complexity(imported).params == complexity(original).params


def test_block_export_through_the_cli_reimports(capsys, tmp_path):
    paths = export_blocks(capsys, tmp_path, ["--pattern", "sparse", "--block-layers", "5"], 1, "json")
    assert main(["graph", "--pattern", "sparse", "--block-layers", "5", "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert main(["graph", "--pattern", "file", "--pattern-option", f"path={paths[0]}", "--blocks", "1",
                 "--format", "json"]) == 0
    reimported = json.loads(capsys.readouterr().out)
    assert (reimported["graph_hash"], reimported["params"]) == (exported["graph_hash"], exported["params"])


@pytest.mark.parametrize("argv, message", [
    (["--block", "3", "--format", "json"], "blocks 1..2"),
    (["--block", "1", "--format", "dot"], "--format graphml or json"),
])
def test_block_export_errors_are_one_line(argv, message, capsys):
    assert main(["graph", "--block-layers", "2,2", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_json_has_exact_and_canonical_hash(capsys):
    from connectome import build_spec, make_arch

    _, out, _ = run(capsys, "--pattern", "sparse", "--depth", "13", "--format", "json")
    spec = build_spec(make_arch(pattern="sparse", depth=13))
    data = json.loads(out)
    assert (data["graph_hash"], data["canonical_hash"]) == (spec.graph_hash, spec.canonical_hash)


# An exported block re-imports with the flags that exported it (issue 26), for every pattern and kind.
@pytest.mark.parametrize("fmt", ["graphml", "json"])
@pytest.mark.parametrize("pattern", SHIPPED_PATTERNS)
def test_an_exported_block_reimports_with_the_flags_that_exported_it(pattern, fmt, capsys, tmp_path):
    flags = ["--block-layers", "3,4", "--growth", "4"]
    original = build_spec(make_arch(pattern=pattern, block_layers=[3, 4], growth=4))
    for block in (1, 2):
        assert main(["graph", "--pattern", pattern, *flags, "--block", str(block), "--format", fmt]) == 0
        path = tmp_path / f"block{block}.{fmt}"
        path.write_text(capsys.readouterr().out)
        code, out, err = run(capsys, "--pattern", "file", "--pattern-option", f"path={path}", *flags,
                             "--format", "json")
        assert code == 0, err
        imported = json.loads(out)["spec"]["blocks"][0]
        assert imported == original.to_dict()["blocks"][block - 1]


def test_the_readmes_residual_block_reimports_without_extra_flags(capsys, tmp_path):
    [path] = export_blocks(capsys, tmp_path, ["--pattern", "residual"], 1, "json")
    code, out, err = run(capsys, "--pattern", "file", "--pattern-option", f"path={path}", "--format", "json")
    assert code == 0, err
    original = build_spec(make_arch(pattern="residual"))
    assert json.loads(out)["spec"]["blocks"][0] == original.to_dict()["blocks"][0]


def test_a_stem_width_that_contradicts_the_file_is_one_line(capsys, tmp_path):
    [path] = export_blocks(capsys, tmp_path, ["--pattern", "residual"], 1, "json")
    code, _, err = run(capsys, "--pattern", "file", "--pattern-option", f"path={path}", "--stem-channels", "16")
    assert code == 2 and "gives node 0 (the block input) width 12, but stem_channels=16" in err
    assert len(err.strip().splitlines()) == 1


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "graphs").glob("*.*[ln]"))


@pytest.mark.parametrize("fmt", ["graphml", "json"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_kind_exports_and_reimports_through_the_cli(example, fmt, capsys, tmp_path):
    argv = ["--pattern", "file", "--pattern-option", f"path={example}", "--blocks", "2"]
    code, original, _ = run(capsys, *argv, "--format", "json")
    paths = export_blocks(capsys, tmp_path, argv, 2, fmt)
    code, again, err = run(capsys, "--pattern", "file", "--pattern-option", f"path={paths[0]}", "--blocks", "2",
                           "--format", "json")
    assert code == 0, err
    keys = ("graph_hash", "canonical_hash", "params", "flops")
    assert [json.loads(again)[k] for k in keys] == [json.loads(original)[k] for k in keys]


def test_text_shows_kinds_drops_columns_and_carries(capsys):
    examples = {p.name: str(p) for p in EXAMPLES}
    _, fractal, _ = run(capsys, "--pattern", "file", "--pattern-option", f"path={examples['fractal.json']}")
    assert "global drop-path 0.5" in fractal
    assert "out <- 6 (drop=0.15, column=3), 7 (drop=0.15, column=2), 8 (drop=0.15, column=1)   (mean 16 ch)" in fractal
    _, highway, _ = run(capsys, "--pattern", "file", "--pattern-option", f"path={examples['highway.json']}")
    assert "2 <- 0 (carry=True), 1   (gated 16 ch, gate_bias=-2, gate_kernel=3)" in highway
    _, depth, _ = run(capsys, "--pattern", "file", "--pattern-option", f"path={examples['stochastic_depth.graphml']}")
    assert "3 <- 0, 1, 2   (sum 16 ch, drop=0.5)" in depth
    _, dot, _ = run(capsys, "--pattern", "file", "--pattern-option", f"path={examples['weighted.graphml']}",
                    "--format", "dot")
    assert "weighted (weights=sigmoid) 16ch" in dot


@pytest.mark.parametrize("agg, message", [
    ("max", f"unknown aggregation 'max'; known: {', '.join(sorted(AGGREGATIONS))}"),
    ("gated", "node 2 gates inputs of unequal widths"),
    ("sum", "node 2 sums inputs of unequal widths"),
    ("mean", "node 2 averages inputs of unequal widths"),
    ("weighted", "node 2 weighs inputs of unequal widths"),
])
def test_bad_wiring_in_a_file_is_one_line_exit_2(agg, message, capsys, tmp_path):
    import networkx as nx

    g = nx.DiGraph([(0, 1), (0, 2), (1, 2)])
    g.add_node(0, width=4)
    g.add_node(1, width=6 if agg != "max" else 4)
    g.add_node(2, op="identity", agg=agg)
    path = tmp_path / "bad.graphml"
    nx.write_graphml(g, path)
    code, _, err = run(capsys, "--pattern", "file", "--pattern-option", f"path={path}")
    assert code == 2 and message in err and str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_a_drop_probability_of_one_is_one_line_exit_2(capsys, tmp_path):
    data = json.loads(next(p for p in EXAMPLES if p.name == "fractal.json").read_text())
    data["links"][-1]["drop"] = 1.0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    code, _, err = run(capsys, "--pattern", "file", "--pattern-option", f"path={path}")
    assert code == 2 and "drop must be a probability in [0, 1), got 1.0" in err


@pytest.mark.parametrize("side", ["-1", "0", "2"])
def test_an_input_too_small_for_the_network_is_one_line_exit_2(side, capsys):
    code, _, err = run(capsys, "--input-size", side)
    assert code == 2 and ("input size" in err or "too small" in err)
    assert len(err.strip().splitlines()) == 1


def test_decoder_shows_params_and_multiply_adds_per_token(capsys):
    argv = ["--family", "decoder", "--pattern", "denseformer", "--growth", "64", "--heads", "4", "--sublayers", "4",
            "--context", "128", "--no-tie-embeddings"]
    code, out, _ = run(capsys, *argv)
    arch = make_arch(family="decoder", pattern="denseformer", growth=64, heads=4, sublayers=4, context=128,
                     tie_embeddings=False)
    cx = complexity(build_spec(arch))
    assert code == 0 and f"params {cx.params:,}" in out and f"{cx.flops:,} multiply-adds per token" in out
    assert "1 attention <- 0" in out and "2 swiglu <- 0, 1" in out and "LM head untied" in out
    code, out, _ = run(capsys, *argv, "--format", "json")
    assert json.loads(out)["params"] == cx.params


def test_every_family_is_a_flag_choice(capsys):
    from connectome.architecture import FAMILIES

    assert {"wide-resnet", "fractalnet", "highway"} <= set(FAMILIES)
    code, out, _ = run(capsys, "--family", "highway", "--pattern", "highway", "--depth", "20", "--format", "json")
    arch = make_arch(family="highway", pattern="highway", depth=20)
    assert code == 0 and json.loads(out)["params"] == complexity(build_spec(arch)).params
    code, out, _ = run(capsys, "--preset", "fractalnet-21", "--block-dropout", "0,0.1,0.2,0.3,0.4", "--format", "json")
    assert code == 0 and json.loads(out)["arch"]["block_dropout"] == [0.0, 0.1, 0.2, 0.3, 0.4]
