"""Text corpora for language models, known without torch: where the file is, its splits, and its checks.

A corpus is any UTF-8 file (`data.path`) read as bytes (vocabulary 256). Without a path the
default corpus is used: the King James Bible as Debian's `bible-kjv` prints it with the line
width pinned, so the bytes (and their sha256) are the same everywhere. `check_corpus` runs when a
trial is planned, so a missing, empty, binary or too short file stops a study before it starts.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from connectome.errors import DatasetError
from connectome.training.config import DataConfig

# The default corpus: `bible -p /usr/lib -l80 gen1:1-rev22:21` (bible-kjv 4.38, bible-kjv-text).
KJV_DIR, KJV_FILE = "kjv", "kjv.txt"
KJV_SHA256 = "ba7c84a755b5ecc052222311dc2d785cd6cf9c0875ca26fc31de1138501496d5"
KJV_BYTES = 4_298_239
KJV_COMMAND = ("bible", "-p", "/usr/lib", "-l80", "gen1:1-rev22:21")
KJV_HOW_TO_GET = ("run `bash scripts/get_data.sh kjv` (as root on Debian it installs bible-kjv and bible-kjv-text; "
                  "by hand: sudo apt-get install bible-kjv bible-kjv-text && mkdir -p data/kjv && "
                  "bible -p /usr/lib -l80 gen1:1-rev22:21 > data/kjv/kjv.txt), or set data.path to any UTF-8 file")
# The generated corpus (data.corpus: generated): this many bytes of made-up sentences, for smoke tests.
GENERATED_BYTES = 1 << 16
WORDS = ("the", "a", "river", "stone", "bird", "light", "house", "king", "road", "field", "sings", "falls", "keeps",
         "finds", "over", "under", "near", "old", "green", "quiet", "and", "then", "of", "every", "small")
# A corpus must hold at least this many context windows (of context + 1 bytes: inputs and next-byte targets).
MIN_WINDOWS = 4


def data_roots(cfg: DataConfig) -> list[Path]:
    """Directories searched for dataset files, in order: data.root, $CONNECTOME_DATA, ./data."""
    roots = [cfg.root, os.environ.get("CONNECTOME_DATA"), "./data"]
    return [Path(r).expanduser().absolute() for r in roots if r]


@dataclass(frozen=True)
class Splits:
    """Byte ranges [start, stop) of the contiguous train, validation and test splits."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]


def split_bounds(size: int, cfg: DataConfig) -> Splits:
    """Train first, then validation, then test: the last val_fraction + test_fraction of the bytes."""
    n_test = int(size * cfg.test_fraction)
    n_val = int(size * cfg.val_fraction)
    cut = size - n_val - n_test
    return Splits(train=(0, cut), val=(cut, cut + n_val), test=(cut + n_val, size))


def generated_text(size: int = GENERATED_BYTES, seed: int = 0) -> bytes:
    """Deterministic made-up sentences (a seeded word chain), `size` bytes of ASCII: learnable, no file needed."""
    import random

    rng, words, out = random.Random(seed), [], 0
    while out < size:
        sentence = " ".join(rng.choice(WORDS[:10] if i % 2 else WORDS) for i in range(rng.randint(4, 9)))
        line = sentence.capitalize() + ".\n"
        words.append(line)
        out += len(line)
    return "".join(words).encode()[:size]


def corpus_path(cfg: DataConfig, make: bool = True) -> Path:
    """The corpus file: data.path, else the default corpus under a data root, printed by `bible` if it is installed.

    With `make` false nothing is written: a default corpus that `bible` can print is returned as the
    path it will have (not there yet), so planning and `--dry-run` write no file.
    """
    if cfg.path is not None:
        return Path(cfg.path).expanduser().absolute()
    candidates = [root / KJV_DIR / KJV_FILE for root in data_roots(cfg)]
    found = next((p for p in candidates if p.is_file()), None)
    if found is not None:
        return found
    if cfg.download and shutil.which(KJV_COMMAND[0]) and Path("/usr/lib/bible.data").exists():
        return write_kjv(candidates[0]) if make else candidates[0]
    looked = ", ".join(str(p) for p in candidates)
    raise DatasetError(f"the default text corpus is missing (looked for {looked}); {KJV_HOW_TO_GET}")


def write_kjv(target: Path) -> Path:
    """Print the King James Bible with Debian's `bible` into `target`; DatasetError unless its sha256 is KJV_SHA256."""
    text = subprocess.run(KJV_COMMAND, capture_output=True, check=False, env={**os.environ, "COLUMNS": "80"}).stdout
    digest = hashlib.sha256(text).hexdigest()
    if digest != KJV_SHA256:
        raise DatasetError(f"`{' '.join(KJV_COMMAND)}` printed {len(text):,} bytes with sha256 {digest}, not the "
                           f"pinned corpus ({KJV_BYTES:,} bytes, {KJV_SHA256}); {KJV_HOW_TO_GET}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(text)
    tmp.replace(target)
    return target


# (path, size, mtime) of files already checked: planning a study checks its corpus once.
_CHECKED: set[tuple[tuple[str, int, int], int]] = set()


def read_corpus(path: Path) -> bytes:
    """The file's bytes; DatasetError for a missing, empty, binary or non-UTF-8 file."""
    if not path.is_file():
        raise DatasetError(f"data.path {path}: no such file")
    data = path.read_bytes()
    if not data:
        raise DatasetError(f"data.path {path}: the file is empty")
    if b"\x00" in data:
        raise DatasetError(f"data.path {path}: a binary file (it holds NUL bytes); give a UTF-8 text file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"data.path {path}: not UTF-8 text (byte {err.start:,} is {data[err.start]:#04x}); "
                           "convert it, e.g. iconv -t UTF-8") from None
    return data


def corpus_key(cfg: DataConfig) -> tuple[str, int, int]:
    """What the corpus's bytes depend on: the file (path, size, mtime), or the generator's name and size."""
    if cfg.corpus == "generated" and cfg.path is None:
        return ("generated", GENERATED_BYTES, 0)
    path = corpus_path(cfg)
    stat = path.stat() if path.is_file() else None
    return (str(path), stat.st_size, stat.st_mtime_ns) if stat else (str(path), -1, -1)


def corpus_bytes(key: tuple[str, int, int]) -> bytes:
    """The corpus a corpus_key names: generated, or the file read and checked (DatasetError if unusable)."""
    return generated_text() if key[0] == "generated" else read_corpus(Path(key[0]))


def check_corpus(cfg: DataConfig, context: int, make: bool = True) -> tuple[str, int, int]:
    """The corpus's key, checked: readable UTF-8 text, long enough for every split to hold a context window.

    Planning passes `make` false: a default corpus not there yet is neither written nor required (as a
    missing image dataset, it is printed by `bible` or refused with the fix when a trial loads it),
    so `--dry-run` stays read-only and works without data; a file named by data.path is checked.
    """
    if not make and cfg.path is None and cfg.corpus == "kjv":
        candidates = [root / KJV_DIR / KJV_FILE for root in data_roots(cfg)]
        if not any(p.is_file() for p in candidates):
            return (str(candidates[0]), -1, -1)
    key = corpus_key(cfg)
    if (key, context) not in _CHECKED:
        check_length(key[0], len(corpus_bytes(key)), cfg, context)
        _CHECKED.add((key, context))
    return key


def check_length(path: str, size: int, cfg: DataConfig, context: int) -> None:
    """DatasetError unless the corpus holds MIN_WINDOWS windows and each split at least one."""
    window = context + 1
    if size < MIN_WINDOWS * window:
        raise DatasetError(f"corpus {path}: {size:,} bytes, shorter than {MIN_WINDOWS} context windows of "
                           f"{window} bytes (arch.context {context} + 1); give a longer text or a shorter context")
    bounds = split_bounds(size, cfg)
    for name, (start, stop) in (("train", bounds.train), ("val", bounds.val), ("test", bounds.test)):
        if stop - start < window:
            raise DatasetError(f"corpus {path}: the {name} split holds {stop - start:,} bytes, less than one "
                               f"context window ({window}); change data.val_fraction / data.test_fraction")
