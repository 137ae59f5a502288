"""What a trial is, for people: `dense, growth=12, seed 0` rather than its hash.

The live view, the report and the experiment trackers name trials the same way, from a trial's
assignment (the factors the study set for it), its record row or its `config.json`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def trial_label(values: Mapping[str, Any], seed: int | None = None, keys: Iterable[str] | None = None,
                null: str | None = None) -> str:
    """What a trial is, for people: `dense, growth=12, seed 0`.

    `values` is a trial's assignment (the factors the study set for it) or its record row;
    `keys` picks the factors to show (default: every key of `values` but the pattern and seed).
    A missing value is left out (a dense trial's `m` in a record row), unless `null` names it:
    in an assignment, None is a level the study chose (`max_span: null`, no limit).
    """
    keys = [k for k in (values if keys is None else keys) if k not in ("pattern", "seed")]
    parts = [str(values["pattern"])] if values.get("pattern") is not None else []
    parts += [f"{k}={null if is_missing(values[k]) else _short(values[k])}" for k in keys
              if k in values and (null is not None or not is_missing(values[k]))]
    if seed is not None:
        parts.append(f"seed {seed}")
    return ", ".join(parts)


def label_from_trial_file(path: str | Path) -> str | None:
    """The label of a trial from its `config.json` (assignment and config, written before it runs)."""
    try:
        saved = json.loads(Path(path).read_text())
        return trial_label(saved.get("assignment") or {}, seed=(saved.get("config") or {}).get("seed"),
                           null="null") or None
    except (OSError, ValueError, AttributeError):
        return None  # not written yet or unreadable: the caller falls back to the trial id


def is_missing(value: Any) -> bool:
    """None or NaN: a factor this trial does not have (a dense trial's `m`)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _short(value: Any) -> str:
    """A factor value as compact text: 0.1 not 0.10000, lists comma-joined."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(_short, value))
    return str(value)
