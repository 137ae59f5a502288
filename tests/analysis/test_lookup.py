"""Hash -> spec lookup over a results directory, as a function and as `connectome graph --hash`."""
import json

import pytest

from connectome import build_spec, make_arch
from connectome.analysis.lookup import find_specs
from connectome.cli import main
from connectome.errors import ConfigError


@pytest.fixture
def results(tmp_path):
    for name, arch in {"dense-a": dict(depth=10, growth=4), "sparse-b": dict(pattern="sparse", depth=13, growth=4)}.items():
        folder = tmp_path / "trials" / name
        folder.mkdir(parents=True)
        (folder / "spec.json").write_text(build_spec(make_arch(**arch)).to_json())
        (folder / "config.json").write_text(json.dumps({"arch": arch}))
    return tmp_path


def test_find_by_either_hash_prefix(results):
    spec = build_spec(make_arch(pattern="sparse", depth=13, growth=4))
    assert [m.trial_id for m in find_specs(results, spec.graph_hash[:6])] == ["sparse-b"]
    found = find_specs(results, spec.canonical_hash.upper())
    assert [m.trial_id for m in found] == ["sparse-b"] and found[0].spec == spec


def test_unknown_or_short_hash_is_a_config_error(results, tmp_path):
    with pytest.raises(ConfigError, match="no trial in .* starting with 'ffffffff'"):
        find_specs(results, "ffffffff")
    with pytest.raises(ConfigError, match="too short"):
        find_specs(results, "ab")
    with pytest.raises(ConfigError, match="not a results directory"):
        find_specs(tmp_path / "nowhere", "abcd")


def test_graph_cli_lookup_prints_json(results, capsys):
    spec = build_spec(make_arch(depth=10, growth=4))
    assert main(["graph", "--hash", spec.canonical_hash, "--results", str(results), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["graph_hash"] == spec.graph_hash and data["canonical_hash"] == spec.canonical_hash
    assert main(["graph", "--hash", spec.canonical_hash]) == 2
    assert "--hash and --results go together" in capsys.readouterr().err
