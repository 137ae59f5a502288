"""Atomic writes: directory fsync, the user's umask, and removal of temp files killed writers left."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectome import files
from connectome.errors import ConfigError
from connectome.files import atomic_write, current_umask, remove_stale_temps, write_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o027, 0o640)])
def test_mode_follows_the_umask_like_open(tmp_path, umask, mask, mode):
    umask(mask)
    write_atomic(tmp_path / "a.json", "{}")
    with open(tmp_path / "plain", "w"):
        pass
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == mode


def test_current_umask_reads_without_changing_it(umask):
    umask(0o027)
    assert current_umask() == 0o027 and current_umask() == 0o027


def test_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    calls = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b)))
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(
        "fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file"), real_fsync(fd)))
    write_atomic(tmp_path / "x" / "r.json", b"1")
    assert calls == ["fsync-file", "replace", "fsync-dir"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))


def _temp_of_a_killed_writer(directory: Path) -> Path:
    """Run a writer in a subprocess that dies (os._exit) inside atomic_write; return the temp it left."""
    code = ("import os, sys\nfrom connectome.files import atomic_write\n"
            "with atomic_write(sys.argv[1]) as f:\n    f.write(b'half'); f.flush(); os._exit(9)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(files.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, str(directory / "record.json")], env=env)
    assert proc.returncode == 9
    (left,) = directory.glob(".record.json.*.tmp")
    return left


def test_temp_of_a_dead_writer_on_this_host_is_removed_at_once(tmp_path):
    left = _temp_of_a_killed_writer(tmp_path)
    (tmp_path / "record.json").write_text("kept")
    assert remove_stale_temps(tmp_path) == [left]
    assert not left.exists() and (tmp_path / "record.json").read_text() == "kept"


def test_live_or_foreign_writers_keep_fresh_temps(tmp_path):
    mine = tmp_path / f".a.json.{os.getpid()}@{files._host()}.abc123.tmp"   # this (live) process
    foreign = tmp_path / ".b.json.4242@otherhost.abc123.tmp"               # another host: cannot check
    old_style = tmp_path / ".c.json.abc123.tmp"                            # no writer in the name
    for f in (mine, foreign, old_style):
        f.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == []
    past = time.time() - files.STALE_TEMP_AGE_S - 5
    for f in (foreign, old_style):
        os.utime(f, (past, past))
    assert sorted(remove_stale_temps(tmp_path)) == sorted([foreign, old_style]) and mine.exists()


def test_remove_stale_temps_ignores_other_files(tmp_path):
    (tmp_path / "report.md").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    past = time.time() - 10 * files.STALE_TEMP_AGE_S
    os.utime(tmp_path / ".hidden", (past, past))
    assert remove_stale_temps(tmp_path) == [] and (tmp_path / ".hidden").exists()


def test_append_line_refuses_a_link_and_leaves_its_target_alone(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("theirs\n")
    journal = tmp_path / "results" / "trials.jsonl"
    journal.parent.mkdir()
    journal.symlink_to(outside)
    with pytest.raises(ConfigError, match=r"trials.jsonl is a symbolic link \(to .*outside.txt\).*replace the link"):
        files.append_line(journal, '{"trial_id": "a"}')
    assert outside.read_text() == "theirs\n"
    files.append_line(tmp_path / "results" / "plain.jsonl", "one")  # regular files as before
    assert (tmp_path / "results" / "plain.jsonl").read_text() == "one\n"


def test_a_torn_last_line_is_cut_off_and_kept_beside_the_journal(tmp_path):
    journal = tmp_path / "optuna.journal"
    journal.write_bytes(b'{"op": 1}\n{"op": 2}\n{"op": 3, "tor')
    aside = files.cut_torn_tail(journal)
    assert journal.read_bytes() == b'{"op": 1}\n{"op": 2}\n'
    assert aside.name.startswith("optuna.journal.torn-") and aside.read_bytes() == b'{"op": 3, "tor'
    assert files.cut_torn_tail(journal) is None and files.cut_torn_tail(tmp_path / "absent") is None
    journal.write_bytes(b'{"op"')  # a single torn line: the journal becomes empty
    assert files.cut_torn_tail(journal) is not None and journal.read_bytes() == b""
