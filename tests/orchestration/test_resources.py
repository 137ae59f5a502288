"""`resources.cpu: auto`: trials over threads, spare CPUs to the last trials, 1 CPU on a cluster."""
import pytest

from connectome.errors import ConfigError
from connectome.orchestration import resources
import yaml

from connectome.study.schema import load_study

BASE = {"name": "s", "data": {"name": "synthetic"}, "search": {"kind": "grid", "seeds": 1}}


@pytest.mark.parametrize("to_run, cpus, expected", [
    (6, 2, 1), (2, 2, 1), (1, 2, 2), (1, 8, 8), (3, 8, 2), (5, 8, 1), (100, 64, 1),
])
def test_auto_cpus_keeps_every_cpu_busy_with_its_own_trial(to_run, cpus, expected):
    assert resources.auto_cpus(to_run, cpus) == expected


def study(tmp_path, **res):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, "resources": res} if res else BASE))
    return load_study(path)


def test_auto_is_the_default_and_is_resolved_for_the_machine(monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "local_cpus", lambda: 2)
    assert study(tmp_path).resources.cpu == "auto"
    concrete, said = resources.resolve_resources(study(tmp_path), to_run=1, address=None)
    assert concrete.resources.cpu == 2.0 and said == "resources.cpu auto: 2 CPUs per trial, 1 trial at once (1 to run on 2 CPUs)"
    concrete, said = resources.resolve_resources(study(tmp_path), to_run=6, address=None)
    assert concrete.resources.cpu == 1.0 and "2 trials at once" in said


def test_a_number_is_kept_and_a_cluster_gets_one_cpu(tmp_path):
    fixed = study(tmp_path, cpu=3)
    assert resources.resolve_resources(fixed, to_run=1, address=None) == (fixed, None)
    concrete, said = resources.resolve_resources(study(tmp_path), to_run=1, address="10.0.0.1:6379")
    assert concrete.resources.cpu == 1.0 and "cluster" in said


@pytest.mark.parametrize("bad", ["many", 0, -1])
def test_bad_cpu_values_are_config_errors(bad, tmp_path):
    with pytest.raises(ConfigError, match="resources.cpu"):
        study(tmp_path, cpu=bad)
