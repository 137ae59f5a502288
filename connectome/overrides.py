"""Configuration input at the edge: YAML mapping files and `dotted.key=value` overrides.

Shared by `connectome train`, study files with `--set`, and `--pattern-option`, so every
command reads files and overrides the same way and says the same thing when they are wrong.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from connectome.errors import ConfigError

# Bounds on what a configuration file may expand to: far above any real study file, far below
# what exhausts the stack (deep nesting) or memory ("billion laughs" alias bombs).
MAX_YAML_BYTES = 4 * 2**20
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 100_000


class BoundedSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses deep nesting and documents whose aliases expand too far."""

    def compose_node(self, parent, index):
        """Compose one node, counting how deep it sits."""
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        """The document's node graph, refused when expanding its aliases would exceed MAX_YAML_NODES."""
        node = super().compose_document()
        _expanded_size(node, {}, set())
        return node


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Nodes a YAML node stands for once every alias is copied out (memoised per shared node)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise yaml.YAMLError("an anchor refers to itself (a recursive alias)")
    open_nodes.add(key)
    children = node.value if isinstance(node, yaml.SequenceNode) else (
        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
    size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(key)
    if size > MAX_YAML_NODES:
        raise yaml.YAMLError(f"aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?)")
    sizes[key] = size
    return size


def load_yaml(text: str) -> Any:
    """yaml.safe_load with bounded nesting and alias expansion."""
    return yaml.load(text, Loader=BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass


def read_text_file(path: str | Path, what: str) -> str:
    """A UTF-8 text file of at most MAX_YAML_BYTES; ConfigError naming the file otherwise."""
    try:
        # non-blocking: a FIFO opens at once (a blocking open waits for a writer forever) and is refused below
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{what} {path}: a FIFO, socket or device, not a regular file; give the path of a "
                                  "YAML file")
            raw = f.read(MAX_YAML_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"{what} {path}: larger than {MAX_YAML_BYTES // 2**20} MiB; is it the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                          f"{err.start}); is it a binary file?") from None


def read_yaml_mapping(path: str | Path, what: str, keys: str, allow_empty: bool = False) -> dict[str, Any]:
    """A YAML mapping from a file (safe, bounded); every problem is a one-line ConfigError naming it."""
    text = read_text_file(path, what)
    try:
        data = load_yaml(text)
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
        return key.strip(), load_yaml(value)
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
