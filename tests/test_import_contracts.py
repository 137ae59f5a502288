"""The import direction is a checked contract: import-linter's layers (pyproject.toml), and no torch or Ray in planning."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Planning, `connectome graph`, `--dry-run`, `connectome status DIR` and `connectome report` start without torch or Ray.
LIGHT_MODULES = ("connectome.study", "connectome.study.dryrun", "connectome.study.estimate",
                 "connectome.orchestration.status", "connectome.cli.graph", "connectome.cli.report",
                 "connectome.analysis.report", "connectome.training.plan", "connectome.builder",
                 "connectome.complexity")
HEAVY = ("torch", "ray")
# Run in a fresh interpreter: records, for the first import of each heavy package, the connectome
# lines on the stack (the chain that pulled it in), then imports the module under test.
PROBE = """
import importlib, json, sys, traceback
HEAVY, chains = {heavy!r}, {{}}

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in HEAVY and name not in chains:
            chains[name] = [f"{{f.filename.rsplit('/connectome/', 1)[-1]}}:{{f.lineno}}"
                            for f in traceback.extract_stack() if "/connectome/" in f.filename]
        return None

sys.meta_path.insert(0, Watch())
importlib.import_module({module!r})
print(json.dumps({{name: chains.get(name, []) for name in HEAVY if name in sys.modules}}))
"""


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "0 broken" in done.stdout


def heavy_imports(module: str) -> dict[str, list[str]]:
    """Heavy packages that importing `module` in a fresh interpreter loads -> the connectome chain that did."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, module=module)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_planning_and_reporting_import_neither_torch_nor_ray(module):
    loaded = heavy_imports(module)
    assert not loaded, f"importing {module} loaded {sorted(loaded)}; first imported through: {loaded}"


def test_the_probe_names_the_chain_that_loads_torch():
    loaded = heavy_imports("connectome.interop")
    assert list(loaded) == ["torch"] and loaded["torch"][-1].startswith("interop.py:")


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="the CPU's bf16 flags are read from Linux's cpuinfo")
def test_planning_a_cpu_study_with_auto_execution_loads_no_torch():
    # studies/smoke.yaml leaves precision, channels_last and compile at "auto": a `connectome run` driver
    # resolves them for the trials' CPU without torch (each CLI run saved ~3 CPU-s of torch import).
    code = ("import json, sys; from connectome.study import expand_grid, load_study; "
            "trials = expand_grid(load_study('studies/smoke.yaml')); "
            "print(json.dumps([sorted({t.config.train.precision for t in trials}), 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    precisions, torch_loaded = json.loads(done.stdout.splitlines()[-1])
    assert precisions and "auto" not in precisions and not torch_loaded
