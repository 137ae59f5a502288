"""Text corpora: where the file is found, its contiguous splits, and the one-line refusals of bad input."""
import hashlib
import shutil
from pathlib import Path

import pytest

from connectome.cli import main
from connectome.errors import ConfigError, DatasetError
from connectome.training import corpus
from connectome.training.config import DataConfig, make_trial_config
from connectome.training.plan import plan_trial

REPO = Path(__file__).resolve().parents[2]
TEXT = "And God said, Let there be light: and there was light.\n" * 40  # 2,200 bytes


def _trial(path=None, context=16, **data):
    data = {"name": "text", **({"path": str(path)} if path else {}), **data}
    return make_trial_config({"arch": {"family": "decoder", "pattern": "prenorm", "growth": 16, "heads": 2,
                                       "sublayers": 2, "context": context},
                              "data": data, "train": {"steps": 2, "epochs": 1, "precision": "fp32",
                                                      "channels_last": False, "compile": False}})


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def test_splits_are_contiguous_and_cover_the_bytes_in_order():
    bounds = corpus.split_bounds(1000, DataConfig(name="text", val_fraction=0.1, test_fraction=0.2))
    assert (bounds.train, bounds.val, bounds.test) == ((0, 700), (700, 800), (800, 1000))


def test_a_valid_file_plans(text_file):
    plan = plan_trial(_trial(text_file))
    assert plan.input_size == (1, 1, 1) and plan.arch.dropout == 0.0


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    (b"", "the file is empty"),
    (b"text\x00" * 500, "binary file"),
    ("caf\u00e9 ".encode("latin-1") * 500, r"not UTF-8 text \(byte 3 is 0xe9\)"),
    (b"short text", "shorter than 4 context windows of 17 bytes"),
], ids=["missing", "empty", "binary", "latin-1", "short"])
def test_bad_files_are_refused_when_planning_in_one_line(tmp_path, content, problem):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=problem) as err:
        plan_trial(_trial(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_split_shorter_than_a_window_names_the_fraction_keys(text_file):
    with pytest.raises(DatasetError, match="the val split holds 2 bytes.*data.val_fraction"):
        plan_trial(_trial(text_file, val_fraction=0.001))


@pytest.mark.parametrize("data, train, problem", [
    ({"val_fraction": 0.5, "test_fraction": 0.5}, {"steps": 2}, "leave no training text"),
    ({}, {"steps": 2, "tokens": 64}, "exactly one budget"),
    ({}, {}, "exactly one budget"),
])
def test_bad_text_configs_are_config_errors(text_file, data, train, problem):
    with pytest.raises(ConfigError, match=problem):
        make_trial_config({"arch": {"family": "decoder", "pattern": "prenorm"},
                           "data": {"name": "text", "path": str(text_file), **data}, "train": train})


@pytest.mark.parametrize("config, problem", [
    ({"data": {"name": "synthetic"}, "train": {"steps": 5}}, "train.steps: language-model keys"),
    ({"data": {"name": "synthetic", "path": "x.txt"}}, "data.path and data.corpus are read by data.name text"),
    ({"arch": {"family": "decoder", "pattern": "prenorm"}, "data": {"name": "synthetic"}}, "set data.name: text"),
    ({"data": {"name": "text"}, "train": {"steps": 5}}, "set arch.family: decoder"),
])
def test_text_and_image_keys_do_not_mix(config, problem):
    with pytest.raises(ConfigError, match=problem):
        make_trial_config(config)


def test_the_default_corpus_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CONNECTOME_DATA", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="scripts/get_data.sh kjv.*bible -p /usr/lib -l80") as err:
        corpus.corpus_path(DataConfig(name="text", download=False))
    assert str(tmp_path / "env" / "kjv" / "kjv.txt") in str(err.value)


@pytest.mark.skipif(not (shutil.which("bible") and Path("/usr/lib/bible.data").exists()),
                    reason="Debian's bible-kjv and bible-kjv-text are not installed")
def test_the_default_corpus_is_printed_with_the_pinned_bytes(tmp_path):
    path = corpus.write_kjv(tmp_path / "kjv" / "kjv.txt")
    data = path.read_bytes()
    assert len(data) == corpus.KJV_BYTES and hashlib.sha256(data).hexdigest() == corpus.KJV_SHA256
    assert data.startswith(b"\nGenesis 1\n\n  1 In the beginning God created the heaven and the earth.\n")


def test_the_generated_corpus_is_deterministic_ascii():
    text = corpus.generated_text()
    assert len(text) == corpus.GENERATED_BYTES and text == corpus.generated_text() and text.isascii()


def test_connectome_train_exits_2_with_one_line_for_a_binary_file(tmp_path, capsys):
    path = tmp_path / "model.bin"
    path.write_bytes(bytes(range(256)) * 40)
    config = tmp_path / "lm.yaml"
    config.write_text(f"arch: {{family: decoder, pattern: prenorm}}\ndata: {{name: text, path: {path}}}\n"
                      "train: {steps: 2, epochs: 1, precision: fp32, channels_last: false, compile: false}\n")
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "binary file" in err and len(err.strip().splitlines()) == 1


def test_planning_neither_needs_nor_writes_the_default_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("CONNECTOME_DATA", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    plan_trial(_trial())
    assert not any(tmp_path.iterdir())
