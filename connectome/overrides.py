"""Configuration input at the edge: YAML mapping files and `dotted.key=value` overrides.

Shared by `connectome train`, study files with `--set`, and `--pattern-option`, so every
command reads files and overrides the same way and says the same thing when they are wrong.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from connectome.errors import ConfigError


def read_yaml_mapping(path: str | Path, what: str, keys: str, allow_empty: bool = False) -> dict[str, Any]:
    """A YAML mapping from a file (safe_load); every problem is a one-line ConfigError naming it."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{what} {path}: not valid YAML{where}: {problem}") from None
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{what} {path}: the file is {kind}; it must be a YAML mapping of keys ({keys})")
    return data


def parse_assignment(text: str, flag: str = "--set", example: str = "train.epochs=2") -> tuple[str, Any]:
    """'a.b=value' -> ('a.b', value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE, e.g. {flag} {example}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"{flag} {text!r}: the value is not valid YAML (quote it to pass a string)") from None


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """tree['a']['b'] = value for 'a.b', creating mappings; keys that contain dots are kept whole."""
    parts = key.split(".")
    node = tree
    while len(parts) > 1:
        if ".".join(parts) in node:  # a key with dots of its own (grid factors like train.lr)
            break
        head = parts.pop(0)
        child = node.setdefault(head, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {head!r} is a {type(child).__name__}, not a mapping of keys")
        node = child
    node[".".join(parts)] = value


def apply_overrides(tree: dict[str, Any], assignments: list[str] | tuple[str, ...], flag: str = "--set") -> None:
    """Every `dotted.key=value` of a command line into a raw config mapping."""
    for text in assignments:
        set_dotted(tree, *parse_assignment(text, flag))
