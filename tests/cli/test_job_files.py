"""What `connectome submit` ships: what git would commit, never secrets, environments, data or results."""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from connectome.cli.job_files import check_shipped, select_job_files, shippable, stage_job_files
from connectome.cli.submit import entrypoint
from connectome.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

CODE = ["connectome/__init__.py", "studies/smoke.yaml", "search_spaces/connectivity.yaml", "README.md", ".gitignore"]
SECRETS = [".env", ".env.local", "deploy/id_rsa", "deploy/id_ed25519.pub", "certs/server.pem", "tls.key",
           ".netrc", "conf/aws_credentials", "conf/credentials", "api_token.txt", "ray-secret.yaml"]
NEVER = [".venv/bin/python", "venv/lib/x.py", "results/smoke/trials.parquet", "data/cifar-10-batches-py/data_batch_1",
         "connectome/__pycache__/x.pyc", ".git/config", "pkg.egg-info/PKG-INFO", ".ssh/config"]


def _tree(root: Path, files: list[str]) -> None:
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"content of {rel}\n")


@pytest.fixture
def checkout(tmp_path):
    """A git checkout holding code, secrets (some of them tracked), ignored and untracked files."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    _tree(root, CODE + SECRETS + [n for n in NEVER if not n.startswith(".git/")] + ["notes/big.log", "new_study.yaml"])
    (root / ".gitignore").write_text("*.log\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-f", *CODE, "deploy/id_rsa", ".env"], cwd=root, check=True)  # secrets tracked by mistake
    subprocess.run([*git, "commit", "-qm", "x"], cwd=root, check=True)
    return root


def test_git_checkout_ships_code_and_untracked_unignored_files(checkout):
    shipped = {str(p) for p in select_job_files(checkout)}
    assert set(CODE) <= shipped and "new_study.yaml" in shipped  # untracked, not ignored
    assert "notes/big.log" not in shipped  # .gitignore
    assert not shipped & set(SECRETS), shipped & set(SECRETS)  # even the tracked .env and id_rsa
    assert not shipped & set(NEVER)


def test_plain_directory_ships_conservatively(tmp_path):
    root = tmp_path / "plain"
    _tree(root, CODE + SECRETS + NEVER + ["runs/model.pt", ".cache/x", "src/extra.py"])
    shipped = {str(p) for p in select_job_files(root)}
    assert set(CODE) - {".gitignore"} <= shipped and "src/extra.py" in shipped
    assert not shipped & set(SECRETS) and not shipped & set(NEVER)
    assert "runs/model.pt" not in shipped and ".cache/x" not in shipped


def test_staged_copy_holds_exactly_the_selection(checkout, tmp_path):
    files = select_job_files(checkout)
    stage_job_files(checkout, files, tmp_path / "staged")
    staged = sorted(PurePosixPath(p.relative_to(tmp_path / "staged").as_posix())
                    for p in (tmp_path / "staged").rglob("*") if p.is_file())
    assert staged == files and (tmp_path / "staged" / "studies/smoke.yaml").read_text() == "content of studies/smoke.yaml\n"


@pytest.mark.parametrize("path, ok", [("connectome/cli/submit.py", True), ("keys/id_rsa", False),
                                      ("a/results/x.json", False), ("token.json", False), ("study.env", False)])
def test_shippable(path, ok):
    assert shippable(PurePosixPath(path)) is ok


def test_ignored_study_file_is_refused(checkout):
    files = select_job_files(checkout)
    check_shipped(checkout, files, checkout / "studies" / "smoke.yaml")
    (checkout / "notes" / "study.log").write_text("name: x\n")
    with pytest.raises(ConfigError, match="would not be shipped"):
        check_shipped(checkout, files, checkout / "notes" / "study.log")


def test_default_interpreter_is_the_clusters_python(monkeypatch):
    from connectome.cli import build_parser

    monkeypatch.chdir(REPO)
    args = build_parser().parse_args(["submit", "studies/smoke.yaml"])
    assert args.python == "python"
    assert entrypoint(args).startswith("python -m connectome run studies/smoke.yaml")
    assert isinstance(args, argparse.Namespace)
