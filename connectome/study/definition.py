"""A results directory belongs to one study definition: what may change on resume and what may not.

The definition is the validated study without what only says where or how fast it runs
(resources, retries, output, description, tracking, the trainer's resource keys). Resuming with a changed
definition is refused, except for two kinds of edit: growing the plan (more seeds, more levels
of a factor, extra variants, a larger `n_trials`: old trials are kept and only new ones run)
and resource-only edits (not part of the definition at all).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from connectome.store.record import RESOURCE_KEYS, flatten

# Study keys that do not change what any trial computes (`limits` only bounds what may be planned).
NON_DEFINITION_KEYS = ("source", "description", "output", "resources", "retries", "name", "limits", "tracking")


def definition(resolved: dict[str, Any]) -> dict[str, Any]:
    """The part of a study dump (model_dump(mode="json")) that fixes what its trials compute."""
    out = {k: v for k, v in resolved.items() if k not in NON_DEFINITION_KEYS}
    if out.get("scheduler") in (None, {"kind": "none"}):  # no scheduler: the fingerprint of older studies
        out.pop("scheduler", None)
    for section, keys in RESOURCE_KEYS.items():
        out[section] = {k: v for k, v in dict(out.get(section) or {}).items() if k not in keys}
    return out


def fingerprint(resolved: dict[str, Any]) -> str:
    """A short hash of the definition (same definition, same fingerprint)."""
    text = json.dumps(definition(resolved), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Changes:
    """How a new definition differs from a stored one."""

    growth: list[str] = field(default_factory=list)  # accepted: the plan grows, old trials stay valid
    conflicts: list[str] = field(default_factory=list)  # refused: old trials would mean something else

    @property
    def any(self) -> bool:
        return bool(self.growth or self.conflicts)


def _seed_set(seeds: Any) -> set[int]:
    return set(range(seeds)) if isinstance(seeds, int) else set(seeds or [])


def _grows_seeds(old: Any, new: Any) -> bool:
    return _seed_set(old) <= _seed_set(new)


def _grows_factors(old: Any, new: Any) -> bool:
    old, new = old or {}, new or {}
    return set(old) == set(new) and all(all(v in new[k] for v in levels) for k, levels in old.items())


def _grows_variants(old: Any, new: Any) -> bool:
    return all(v in (new or []) for v in (old or []))


def _grows_count(old: Any, new: Any) -> bool:
    return isinstance(old, int) and isinstance(new, int) and new >= old


# search keys whose growth keeps every old trial valid
GROWTH_RULES: dict[str, Callable[[Any, Any], bool]] = {
    "seeds": _grows_seeds, "factors": _grows_factors, "variants": _grows_variants, "n_trials": _grows_count,
}


def compare(old_resolved: dict[str, Any], new_resolved: dict[str, Any]) -> Changes:
    """Growth and conflicting changes from a stored study dump to a new one."""
    old, new = definition(old_resolved), definition(new_resolved)
    changes = Changes()
    old_search, new_search = dict(old.pop("search", {}) or {}), dict(new.pop("search", {}) or {})
    if old_search.get("kind") == new_search.get("kind"):
        for key, grows in GROWTH_RULES.items():
            a, b = old_search.pop(key, None), new_search.pop(key, None)
            if a != b:
                (changes.growth if grows(a, b) else changes.conflicts).append(f"search.{key}: {_short(a)} -> {_short(b)}")
    old["search"], new["search"] = old_search, new_search
    flat_old, flat_new = flatten(old), flatten(new)
    for key in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(key, "(unset)"), flat_new.get(key, "(unset)")
        if a != b:
            changes.conflicts.append(f"{key}: {_short(a)} -> {_short(b)}")
    return changes


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
