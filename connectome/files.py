"""Files written atomically: a temp file in the same directory, fsync, then rename over the target.

Every durable artefact (checkpoints, records, parquet tables, study copies) goes through here,
so a process killed mid-write leaves the previous version, never a torn file.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temp file next to path; on success flush, fsync and rename it over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from other users of shared storage
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Bytes or text, atomically."""
    with atomic_write(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def append_line(path: str | Path, line: str) -> None:
    """Append one line durably (O_APPEND, fsync); a torn last line left by a killed writer is closed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = line.rstrip("\n").encode() + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
