"""The installable package: light top-level import, a core without Ray, a complete __all__, metadata."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import connectome

REPO = Path(__file__).resolve().parents[1]


def python(code: str, pythonpath: str = str(REPO), cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter with exactly this PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_import_connectome_is_light():
    done = python("import sys, json, connectome\n"
                  "print(json.dumps(sorted(m for m in ('torch', 'ray', 'pandas', 'networkx', 'pydantic')"
                  " if m in sys.modules)))")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_all_names_resolve_lazily():
    expected = {"ConnectomeNet", "run_study", "load_study", "load_torchvision_densenet", "train_trial",
                "build_spec", "build_model", "register_pattern", "match_budget", "__version__"}
    assert expected <= set(connectome.__all__)
    for name in connectome.__all__:
        assert getattr(connectome, name) is not None, name
    assert set(connectome.__all__) <= set(dir(connectome))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        connectome.nope  # noqa: B018


@pytest.mark.slow  # a fresh interpreter imports torch and trains one tiny epoch: 10-20 s here
def test_core_never_imports_ray():
    """Spec, executor, graph, a training run and analysis work without Ray being imported."""
    code = """
import sys, json
import connectome.spec, connectome.executor, connectome.builder, connectome.training, connectome.analysis
import connectome.analysis.report, connectome.analysis.figures, connectome.cli.graph, connectome.cli.train
from connectome.cli import main
assert main(["graph", "--pattern", "partial", "--block-layers", "2,2", "--format", "json"]) == 0
assert main(["train", "--dataset", "synthetic", "--preset", "densenet-40-12", "-s", "arch.block_layers=[1,1]",
             "-s", "data.synthetic.train=64", "-s", "data.synthetic.test=32", "-s", "data.val_size=16",
             "--epochs", "1", "--json"]) == 0
print(json.dumps(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))))
"""
    done = python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from this checkout offline (no build isolation, no dependencies fetched)."""
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what a release ships, so setuptools' build/ stays out of the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "connectome", source / "connectome", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return next(out.glob("connectome-*.whl"))


@pytest.mark.slow  # builds a wheel: several seconds
def test_wheel_metadata_version_extras_and_typing(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert meta["Version"] == connectome.__version__
    assert {"cluster", "dashboard", "tracking", "dev"} <= set(meta.get_all("Provides-Extra"))
    requires = meta.get_all("Requires-Dist")
    assert "networkx>=3.4" in requires and "optuna>=4.0" in requires
    assert not any("<" in r for r in requires if "extra" not in r)  # no caps on the core dependencies
    assert "connectome/py.typed" in names and "connectome/cli/__init__.py" in names
    assert "connectome = connectome.cli:main" in entry_points
    assert meta["License-Expression"] == "MIT"


@pytest.mark.slow
def test_installed_wheel_runs_the_command_line(wheel, tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    code = ("import connectome, sys\nfrom connectome.cli import main\nprint(connectome.__file__)\n"
            "sys.exit(main(['graph', '--pattern', 'dense', '--block-layers', '2']))")
    # Only the installed copy is on the path (dependencies come from this interpreter's site-packages).
    run = python(code, pythonpath=str(site), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(site)) and "pattern dense" in run.stdout


@pytest.mark.slow
def test_editable_install_points_at_the_checkout(tmp_path):
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip uninstalls this interpreter's own editable connectome
    # (the developer's environment) before installing under --prefix.
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                           "--ignore-installed", "--prefix", str(prefix), "-e", str(REPO)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    site_dir = next(prefix.glob("lib/python*/site-packages"))
    # -S: without this interpreter's own site-packages, whose editable connectome would win.
    # `import connectome` needs no dependency, so the bare interpreter can import it.
    code = f"import site\nsite.addsitedir({str(site_dir)!r})\nimport connectome\nprint(connectome.__file__)"
    run = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(REPO / "connectome" / "__init__.py")
