"""User plugins: modules that call `register_pattern`, named once and loaded wherever trials are built.

A plugin is named either by an installed package's entry point in the group
`connectome.patterns` (loaded by the CLI, by `load_study` and by every Ray worker), or in a
study file's `plugins:` list (a module name importable everywhere, or a path to a .py file).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Iterable

from connectome.errors import ConfigError

ENTRY_POINT_GROUP = "connectome.patterns"
log = logging.getLogger(__name__)

# Plugins already imported in this process (entry-point names, module names, file paths).
_LOADED: set[str] = set()


def load_plugins(names: Iterable[str] = ()) -> list[str]:
    """Import the entry-point plugins and the named ones (module names or .py paths), once each."""
    loaded = load_entry_points()
    for name in names:
        if name not in _LOADED:
            load_file(name) if is_file_plugin(name) else load_module(name)
            log.debug("plugin %s loaded", name)
            _LOADED.add(name)
            loaded.append(name)
    return loaded


def load_entry_points() -> list[str]:
    """Import every plugin registered under the `connectome.patterns` entry-point group."""
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry point {ep.name} = {ep.value}"
        if key in _LOADED:
            continue
        try:
            ep.load()
        except Exception as err:  # noqa: BLE001 - a broken installed plugin is a one-line user error
            raise ConfigError(f"plugin {key} (group {ENTRY_POINT_GROUP}) failed to load: "
                              f"{type(err).__name__}: {err}") from err
        log.debug("plugin %s loaded", key)
        _LOADED.add(key)
        loaded.append(key)
    return loaded


def is_file_plugin(name: str) -> bool:
    """True when the plugin is named by a path to a Python file rather than a module name."""
    return name.endswith(".py") or "/" in name or "\\" in name


def load_module(name: str) -> None:
    """Import a plugin module by its dotted name."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and name.startswith(err.name):
            raise ConfigError(f"plugin {name!r}: no module named {err.name!r}; install it, put its folder "
                              "on PYTHONPATH, or name the .py file by its path") from None
        raise


def load_file(path: str) -> None:
    """Import a plugin from a .py file under a module name derived from its path."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"plugin {path!r}: no such file")
    # The same name in every process (driver, Ray workers): a digest of the absolute path.
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:8]
    module_name = f"connectome_plugin_{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[module_name]
        raise
