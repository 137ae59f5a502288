"""Plugins: custom patterns named by path, module name or entry point, loaded once each."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from connectome import plugins
from connectome.architecture import make_arch
from connectome.builder import build_spec
from connectome.errors import ConfigError
from connectome.patterns import PATTERNS
from connectome.study import expand_grid, load_study

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pairs_pattern.py"


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    """Each test starts without the example registered and with nothing loaded."""
    monkeypatch.setattr(plugins, "_LOADED", set())
    saved = dict(PATTERNS)
    PATTERNS.pop("pairs", None)
    yield
    PATTERNS.clear()
    PATTERNS.update(saved)


def write_dist_info(site: Path, module: str, entry_name: str) -> None:
    """A minimal installed distribution declaring one `connectome.patterns` entry point."""
    info = site / "my_patterns-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-patterns\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[connectome.patterns]\n{entry_name} = {module}\n")


def test_file_plugin_registers_its_pattern_once():
    assert "pairs" not in PATTERNS
    assert plugins.load_plugins([str(EXAMPLE)]) == [str(EXAMPLE)]
    spec = build_spec(make_arch(pattern="pairs", block_layers=[4], pattern_options={"reach": 2}))
    assert [len(spec.blocks[0].inputs[v]) for v in range(1, 5)] == [1, 2, 2, 2]
    assert plugins.load_plugins([str(EXAMPLE)]) == []  # already loaded: not executed again


def test_module_plugin_on_the_path(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "my_patterns.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load_plugins(["my_patterns"])
    assert "pairs" in PATTERNS


def test_entry_point_plugin_is_found_without_naming_it(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "my_ep_patterns.py")  # a module name no other test imports
    write_dist_info(tmp_path, "my_ep_patterns", "pairs")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.load_plugins() == ["entry point pairs = my_ep_patterns"]
    assert "pairs" in PATTERNS


@pytest.mark.parametrize("name, message", [
    ("no_such_plugin_module", "no module named 'no_such_plugin_module'"),
    ("missing/pattern.py", "no such file"),
])
def test_missing_plugin_is_a_config_error(name, message):
    with pytest.raises(ConfigError, match=message):
        plugins.load_plugins([name])


def test_study_file_plugins_are_relative_to_the_study_file(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "pairs_pattern.py")
    study = yaml.safe_load((REPO / "studies" / "smoke.yaml").read_text())
    study["plugins"] = ["pairs_pattern.py"]
    study["search"]["variants"] = [{"pattern": "pairs"}]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    monkeypatch.chdir(REPO)  # not the study's folder
    loaded = load_study(tmp_path / "study.yaml")
    assert loaded.plugins == [str(tmp_path / "pairs_pattern.py")]
    assert {t.config.arch.pattern for t in expand_grid(loaded)} == {"pairs"}


def test_study_with_a_missing_plugin_names_the_file(tmp_path):
    study = yaml.safe_load((REPO / "studies" / "smoke.yaml").read_text())
    study["plugins"] = ["nowhere.py"]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError, match=r"study.yaml: plugins: plugin .*nowhere.py.*: no such file"):
        load_study(tmp_path / "study.yaml")
