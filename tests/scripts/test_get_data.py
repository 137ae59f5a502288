"""scripts/get_data.sh: present data is kept, torchvision fetches it without root, else the exact fix."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

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
