"""scripts/get_data.sh: present data is kept, torchvision fetches it without root, else the exact fix."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from connectome.training.corpus import KJV_SHA256

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "get_data.sh"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


def fake_python(tmp_path: Path, body: str) -> Path:
    """An executable standing in for `python - ROOT` (reads the script on stdin, $2 is the root)."""
    path = tmp_path / "fake-python"
    path.write_text(f"#!/bin/sh\ncat > /dev/null\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def get_data(tmp_path: Path, python: Path) -> subprocess.CompletedProcess:
    """Run the script with its data root, Debian's folder and apt-get all pointed away from the system."""
    env = {**os.environ, "CONNECTOME_DATA": str(tmp_path / "data"), "PYTHON": str(python),
           "GET_DATA_NO_APT": "1", "GET_DATA_SYSTEM_DIR": str(tmp_path / "no-system-copy")}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60)


def test_present_files_are_kept(tmp_path):
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    (folder / FILES[0]).write_bytes(b"")
    done = get_data(tmp_path, fake_python(tmp_path, "exit 3"))
    assert done.returncode == 0 and "present" in done.stdout


def test_without_the_package_torchvision_downloads_it(tmp_path):
    writes = 'mkdir -p "$2/FashionMNIST/raw" && for f in ' + " ".join(FILES) + '; do : > "$2/FashionMNIST/raw/$f"; done'
    done = get_data(tmp_path, fake_python(tmp_path, writes))
    assert done.returncode == 0, done.stderr
    assert "downloaded to" in done.stdout and (tmp_path / "data" / "FashionMNIST" / "raw" / FILES[0]).exists()


def test_offline_prints_the_exact_fix(tmp_path):
    done = get_data(tmp_path, fake_python(tmp_path, "echo 'urlopen error' >&2; exit 1"))
    assert done.returncode == 1
    target = tmp_path / "data" / "fashion-mnist"
    assert f"mkdir -p {target} && cd {target}" in done.stderr
    assert all(f in done.stderr for f in FILES) and "zalandoresearch/fashion-mnist" in done.stderr
    if Path("/etc/debian_version").exists():
        assert "sudo apt-get install dataset-fashion-mnist" in done.stderr


def kjv(tmp_path: Path, tools: tuple[str, ...]) -> subprocess.CompletedProcess:
    """`get_data.sh kjv` with only `tools` (and the shell's basics) on the PATH, and no apt-get install."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sha256sum", "cut", "mkdir", "mktemp", "rm", "mv", "cat", "id", *tools):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "CONNECTOME_DATA": str(tmp_path / "data"), "GET_DATA_NO_APT": "1",
           "HOME": str(tmp_path)}
    return subprocess.run(["/bin/bash", str(SCRIPT), "kjv"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)


def test_kjv_without_bible_or_network_prints_the_exact_fix(tmp_path):
    done = kjv(tmp_path, ())
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "apt-get install bible-kjv bible-kjv-text" in done.stderr and "bible -p /usr/lib -l80" in done.stderr
    assert not (tmp_path / "data" / "kjv" / "kjv.txt").exists()


@pytest.mark.skipif(not shutil.which("bible"), reason="Debian's bible-kjv is not installed")
def test_kjv_with_bible_writes_the_pinned_corpus_once(tmp_path):
    first, second = kjv(tmp_path, ("bible",)), kjv(tmp_path, ("bible",))
    assert first.returncode == 0 and "written to" in first.stdout, first.stderr
    assert second.returncode == 0 and "present" in second.stdout
    data = (tmp_path / "data" / "kjv" / "kjv.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == KJV_SHA256
