"""The declared floors of pyproject.toml as pip constraints (`name==floor`), for `make test-floor`.

    python3 scripts/floor_constraints.py > constraints.txt

Every core dependency must declare a floor (`>=`): a dependency without one fails here, so the
floor tests cannot silently test the newest release instead.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# name, optional [extras], then the `>=` floor; markers and other clauses may follow.
FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)")


def floor_pin(requirement: str) -> str:
    """`ray[tune]>=2.41` -> `ray==2.41` (a constraints file takes no extras)."""
    found = FLOOR.match(requirement)
    if found is None:
        raise SystemExit(f"{PYPROJECT.name}: dependency {requirement!r} declares no floor (name>=version)")
    return f"{found[1]}=={found[2]}"


def floor_pins(pyproject: Path = PYPROJECT) -> list[str]:
    """One `name==floor` line per core dependency, in pyproject's order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return [floor_pin(requirement) for requirement in project["dependencies"]]


if __name__ == "__main__":
    sys.stdout.write("".join(f"{pin}\n" for pin in floor_pins()))
