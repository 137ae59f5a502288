"""Files written atomically: a temp file in the same directory, fsync, rename over the target, fsync the directory.

Every durable artefact (checkpoints, records, parquet tables, study copies, reports) goes
through here, so a process killed mid-write leaves the previous version, never a torn file,
and a rename that returned survives a power cut. Files get the mode a plain `open()` would
give them under the user's umask.

A writer killed between creating its temp file and renaming it leaves `.NAME.<pid>@<host>.<random>.tmp`
behind; `remove_stale_temps(directory)` deletes those of dead processes on this host at once
and any other that has not been modified for STALE_TEMP_AGE_S (a live writer touches its
temp file continuously until the rename, which follows within milliseconds).
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from connectome.errors import ConfigError
from typing import BinaryIO, Iterator

# A temp file untouched this long belongs to no live writer (one on another host, or a reused pid).
STALE_TEMP_AGE_S = 600.0
_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<host>[^.]*)\.[^.]+\.tmp$")
_UMASK_LOCK = threading.Lock()


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temp file next to path; on success flush, fsync, rename it over path and fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_host()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from the user's group
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Bytes or text, atomically."""
    with atomic_write(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def fsync_directory(directory: str | Path) -> None:
    """Make a rename in directory durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename itself still happened
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (other threads may be creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def remove_stale_temps(directory: str | Path, max_age_s: float = STALE_TEMP_AGE_S,
                       recursive: bool = False) -> list[Path]:
    """Delete temp files that killed writers left in directory (and below it if recursive); returns them.

    A temp file is stale when its writer was a process on this host that no longer runs, or
    when it has not been modified for max_age_s (writers elsewhere, or files of an older naming).
    """
    removed = []
    now = time.time()
    for tmp in (Path(directory).rglob if recursive else Path(directory).glob)(".*.tmp"):
        try:
            if _writer_is_dead(tmp.name) or now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # its writer renamed it, or another cleaner got there first
            continue
    return removed


def _writer_is_dead(name: str) -> bool:
    """True when the temp file's name says it was written by a process of this host that has exited."""
    match = _TEMP.match(name)
    if match is None or match["host"] != _host():
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False


def _host() -> str:
    """This host's name as it appears in temp file names (no dots, so names parse back)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64]


def cut_torn_tail(path: Path) -> Path | None:
    """A line journal whose last line is torn (no newline: its writer was killed) loses that line,
    kept beside it as NAME.torn-TIME-PID; the path of that file, or None if the journal was whole.

    For journals written by others (Optuna's), which would append the next record onto the torn
    line and make both unreadable; `append_line` closes a torn line itself.
    """
    refuse_link(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    if not data or data.endswith(b"\n"):
        return None
    keep = data.rfind(b"\n") + 1
    aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    write_atomic(aside, data[keep:])
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return aside


def refuse_link(path: Path) -> None:
    """ConfigError if `path` is a symbolic link: files that are appended to are never followed elsewhere."""
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link (to {os.readlink(path)}); connectome appends only to "
                          "regular files it owns: replace the link with the file itself")


def append_line(path: str | Path, line: str) -> None:
    """Append one line durably (O_APPEND, fsync); a torn last line left by a killed writer is closed first.

    A symbolic link at `path` is refused (ConfigError), never followed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = line.rstrip("\n").encode() + b"\n"
    try:  # never through a link: a journal linked elsewhere would have its lines appended there
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError:
        refuse_link(path)
        raise
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
