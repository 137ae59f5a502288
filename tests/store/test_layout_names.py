"""Results-directory file names are written in one place: connectome/store/layout.py."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from connectome.store.layout import StudyDir, TrialFiles

PACKAGE = Path(__file__).resolve().parents[2] / "connectome"
OWNER = PACKAGE / "store" / "layout.py"


def layout_file_names() -> set[str]:
    """The name of every file StudyDir and TrialFiles define (directories have no suffix and are left out)."""
    sd = StudyDir("results/x")
    objects = [(sd, StudyDir), (sd.trial("t"), TrialFiles)]
    paths = [getattr(obj, name) for obj, cls in objects for name, member in vars(cls).items()
             if isinstance(member, property)]
    return {p.name for p in paths if isinstance(p, Path) and p.suffix}


def string_constants(path: Path):
    """(line, value) of every string literal in a module, f-string pieces included."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def literal_names(path: Path) -> list[str]:
    """`line: literal` for each string literal in a module that is a results file name or ends in /NAME."""
    pattern = re.compile(r"(?:^|/)(%s)$" % "|".join(re.escape(n) for n in sorted(layout_file_names())))
    return [f"{line}: {value!r}" for line, value in string_constants(path) if pattern.search(value)]


def test_the_layout_names_the_files_of_a_results_directory():
    names = layout_file_names()
    assert {"config.json", "result.json", "checkpoint.pt", "progress.json", "trials.jsonl", "optuna.db",
            "optuna.journal", "export.parquet", "prescreen.csv", "report.md", "lesion.parquet"} <= names


def test_no_results_file_name_is_written_outside_the_layout():
    found = [f"{path.relative_to(PACKAGE.parent)}:{hit}"
             for path in sorted(PACKAGE.rglob("*.py")) if path != OWNER for hit in literal_names(path)]
    assert not found, "use StudyDir / TrialFiles (connectome/store/layout.py) instead of:\n" + "\n".join(found)


def test_the_scan_finds_a_literal_name(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""Writes export.parquet."""\npath = root / "export.parquet"\nother = f"{root}/optuna.db"\n'
                      'fine = "table1.csv"\n')
    assert literal_names(module) == ["2: 'export.parquet'", "3: '/optuna.db'"]
