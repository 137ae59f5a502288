"""Configuration input at the edge: hostile YAML files are one-line ConfigErrors (exit 2), never a hang."""
from __future__ import annotations

import pytest
import yaml

from connectome.cli import main
from connectome.errors import ConfigError
from connectome.overrides import MAX_YAML_NODES, load_yaml, read_yaml_mapping

BILLION_LAUGHS = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
)

HOSTILE = [
    ("binary", b"\xff\xfe\x00\x01\x89PNG", "not UTF-8 text (byte 0xff at offset 0)"),
    ("latin1", "name: caf\xe9\n".encode("latin1"), "not UTF-8 text (byte 0xe9 at offset 9)"),
    ("nul-bytes", b"name: x\x00\x00\n", "not valid YAML"),
    ("deep-lists", ("a: " + "[" * 5000 + "]" * 5000).encode(), "nested deeper than 64 levels"),
    ("deep-maps", ("a: " + "{b: " * 5000 + "1" + "}" * 5000).encode(), "nested deeper than 64 levels"),
    ("alias-bomb", BILLION_LAUGHS.encode(), "aliases expand to more than 100,000 values"),
    ("recursive-alias", b"a: &a [*a]\n", "an anchor refers to itself"),
    ("huge", b"#" * (5 * 2**20), "larger than 4 MiB"),
]


@pytest.mark.parametrize("blob, expected", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_study_file_is_one_line_exit_2(tmp_path, capsys, blob, expected):
    path = tmp_path / "study.yaml"
    path.write_bytes(blob)
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(path) in err and expected in err


def test_ordinary_anchors_still_work():
    data = load_yaml("base: &b {lr: 0.1, epochs: 2}\nrun1: *b\nrun2: {<<: *b, lr: 0.2}\n")
    assert data["run1"] == {"lr": 0.1, "epochs": 2} and data["run2"] == {"lr": 0.2, "epochs": 2}


def test_alias_bound_counts_the_expansion_not_the_aliases():
    # 9 aliases of a list of 12,000 items expand past the bound; the text is small.
    text = "a: &a [" + ", ".join(["1"] * 12_000) + "]\nb: [" + ", ".join(["*a"] * 9) + "]\n"
    assert 9 * 12_000 > MAX_YAML_NODES
    with pytest.raises(yaml.YAMLError, match="alias bomb"):
        load_yaml(text)
    assert len(load_yaml(text.replace(", ".join(["*a"] * 9), "*a"))["b"][0]) == 12_000


def test_set_values_are_bounded_too(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text("name: x\n")
    assert main(["run", str(path), "--dry-run", "--set", "x=" + "[" * 200 + "]" * 200]) == 2
    assert "the value is not valid YAML" in capsys.readouterr().err


def test_read_yaml_mapping_names_the_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes(b"\x80")
    with pytest.raises(ConfigError, match=f"search space {path}: not UTF-8"):
        read_yaml_mapping(path, "search space", "parameter: ...")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_study_path_that_is_no_regular_file_is_one_line_and_never_blocks(tmp_path, capsys, kind):
    """issue 30: a FIFO as the study file blocked `connectome run` forever (its open waited for a writer)."""
    import os

    path = tmp_path / "study.yaml"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"connectome run: error: cannot read study file {path}: Is a directory" if kind == "directory" else
                   f"connectome run: error: study file {path}: a FIFO, socket or device, not a regular file; give the "
                   "path of a YAML file")
