"""The files `connectome submit` ships to the cluster: the code and studies a job needs, never secrets.

In a git checkout the selection is what git would commit (tracked files plus untracked ones
that .gitignore does not exclude); elsewhere it is a walk of the directory that skips
dot-directories, environments, data, results and checkpoints. Either way, files matching
NEVER_SHIP (environment files, keys, credentials) and anything under NEVER_SHIP_DIRS are
left out, even when git tracks them.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

from connectome.errors import ConfigError

# Secrets by file name: shipped nowhere, tracked or not.
NEVER_SHIP = (
    ".env", ".env.*", "*.env", ".netrc", "_netrc", ".pgpass", ".pypirc", ".git-credentials", ".npmrc",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.kdbx", "*.gpg", "*.asc",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.ppk", "*credentials*",
    "*secret*", "*token*",
)
# Directories never shipped, at any depth: environments, VCS, caches, data and results.
NEVER_SHIP_DIRS = (
    ".git", ".venv", "venv", "env", ".tox", ".nox", "__pycache__", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", "node_modules", ".ssh", ".aws", ".gnupg", ".config", "results", "data", "*.egg-info",
)
# Outside git, also skip large artefacts a job never reads from its working directory.
NON_GIT_SKIP = ("*.pt", "*.pth", "*.ckpt", "*.parquet", "*.db", "*.sqlite", "*.npz", "*.tar", "*.tar.gz",
                "*.zip")


def select_job_files(root: str | Path) -> list[PurePosixPath]:
    """Relative paths of the files under root that a job may receive, sorted."""
    root = Path(root)
    listed = _git_files(root)
    if listed is None:
        listed = [p for p in _walk(root) if not _matches(p.name, NON_GIT_SKIP)]
    return sorted(p for p in listed if shippable(p) and (root / p).is_file())


def shippable(path: PurePosixPath) -> bool:
    """False for secrets and for anything inside a never-shipped directory."""
    if any(_matches(part, NEVER_SHIP_DIRS) for part in path.parts[:-1]):
        return False
    return not _matches(path.name, NEVER_SHIP)


def stage_job_files(root: str | Path, files: list[PurePosixPath], dest: str | Path) -> None:
    """Copy the selected files into dest (the directory Ray uploads as the job's working dir)."""
    for rel in files:
        target = Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(root) / rel, target)


def check_shipped(root: Path, files: list[PurePosixPath], needed: Path) -> None:
    """ConfigError unless the study file is among the shipped files."""
    rel = PurePosixPath(needed.resolve().relative_to(root.resolve()).as_posix())
    if rel not in files:
        raise ConfigError(f"{needed}: the study file would not be shipped (it is ignored by .gitignore or "
                          "looks like a secret); move it or unignore it")


def _git_files(root: Path) -> list[PurePosixPath] | None:
    """Tracked and unignored untracked files under root, or None outside a git checkout."""
    if shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, timeout=60, check=True).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        return None
    return [PurePosixPath(p) for p in dict.fromkeys(out.decode("utf-8", "surrogateescape").split("\0")) if p]


def _walk(root: Path) -> list[PurePosixPath]:
    """Every file under root, not descending into dot-directories or never-shipped ones."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _matches(d, NEVER_SHIP_DIRS)]
        rel = Path(folder).relative_to(root)
        found += [PurePosixPath((rel / n).as_posix()) for n in names]
    return found


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), p) for p in patterns)
