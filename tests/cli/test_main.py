"""The `connectome` entry point: version, help without torch, flag vocabulary, verbosity, plugins, output."""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connectome import __version__
from connectome.cli import build_parser, main
from connectome.console import make_console, worker_logs_wanted

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("graph", "train", "run", "submit", "status", "stop", "report", "lesion", "wiring", "export")
HEAVY = ("torch", "torchvision", "ray", "pandas", "optuna", "matplotlib")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Subcommand name -> its parser."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter (this checkout first on the path)."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"connectome {__version__}"


def test_help_of_every_command_imports_no_heavy_library():
    code = (
        "import contextlib, io, json, sys\n"
        "from connectome.cli import main\n"
        f"for argv in [['--help']] + [[c, '--help'] for c in {list(COMMANDS)!r}]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_every_command_is_registered():
    assert set(subcommands()) == set(COMMANDS)


@pytest.mark.parametrize("command", (None, *COMMANDS))
def test_every_flag_has_help_text(command):
    parser = build_parser() if command is None else subcommands()[command]
    missing = [a.option_strings or a.dest for a in parser._actions if not a.help]
    assert missing == []


def test_top_level_help_describes_the_tool_not_the_code(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "wiring" in out and "study" in out
    assert "module" not in out and "register(" not in out


@pytest.mark.parametrize("command, flags", [
    ("run", {"-s", "--set", "-o", "--output", "--json", "--address"}),
    ("submit", {"-s", "--set", "-o", "--output", "--dashboard-url"}),
    ("train", {"-s", "--set", "--json"}),
    ("report", {"-o", "--output", "--json"}),
    ("status", {"--json", "--dashboard-url"}),
    ("stop", {"--dashboard-url"}),
])
def test_one_vocabulary_of_flags(command, flags):
    parser = subcommands()[command]
    assert flags <= {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("argv, level, workers", [
    (["-q"], logging.WARNING, False), ([], logging.INFO, False), (["-v"], logging.DEBUG, True),
])
def test_verbosity_sets_logging_and_worker_logs(argv, level, workers, capsys):
    logger = logging.getLogger("connectome")
    before = logger.level
    try:
        # -q/-v are accepted after the subcommand as well as before it.
        assert main(["graph", "--block-layers", "2", *argv]) == 0
        assert logger.level == level and worker_logs_wanted() is workers
        assert main([*argv, "graph", "--block-layers", "2"]) == 0
        assert logger.level == level
    finally:
        logger.setLevel(before)


def test_plugin_patterns_are_listed_in_pattern_help(tmp_path):
    """An installed entry-point plugin shows up in `--pattern` help and can be used by name."""
    shutil.copy(REPO / "examples" / "pairs_pattern.py", tmp_path / "my_patterns.py")
    info = tmp_path / "my_patterns-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-patterns\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[connectome.patterns]\npairs = my_patterns\n")
    code = (
        "import contextlib, io, sys\n"
        "from connectome.cli import main\n"
        "with contextlib.suppress(SystemExit):\n"
        "    main(['graph', '--help'])\n"
        "sys.exit(main(['graph', '--pattern', 'pairs', '--block-layers', '3', '--format', 'json']))\n"
    )
    done = python(code, env={"PYTHONPATH": str(tmp_path), "COLUMNS": "400"})
    assert done.returncode == 0, done.stderr
    help_line = next(line for line in done.stdout.splitlines() if "block connectivity:" in line)
    assert "pairs" in help_line and "dense" in help_line
    assert '"pattern": "pairs"' in done.stdout


def test_terminal_text_is_not_markup_and_pipes_are_not_wrapped():
    code = (
        "from connectome.console import make_console\n"
        "make_console().print('[bold]' + 'word ' * 40 + '[/bold] [red]x')\n"
    )
    done = python(code)  # stdout is a pipe
    assert done.stdout.strip() == ("[bold]" + "word " * 40 + "[/bold] [red]x").strip()


def test_a_terminal_keeps_its_width():
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    console = make_console(Terminal())
    console.print("[dim]" + "word " * 40)
    assert console.width < 1000 and "[dim]" in console.file.getvalue()


def test_verbose_logs_are_plain_lines_outside_a_terminal(tmp_path, capsys, monkeypatch):
    from connectome import plugins
    from connectome.patterns import PATTERNS

    monkeypatch.setattr(plugins, "_LOADED", set())
    monkeypatch.setattr("connectome.patterns.PATTERNS", dict(PATTERNS))  # the plugin registers into a copy
    plugin = REPO / "examples" / "pairs_pattern.py"
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\ndata: {{name: synthetic}}\nplugins: [{plugin}]\n"
                     "search: {kind: grid, variants: [{pattern: pairs}]}\n")
    logger = logging.getLogger("connectome")
    before = logger.level
    try:
        assert main(["run", str(study), "--dry-run", "-v"]) == 0
    finally:
        logger.setLevel(before)
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "plugin" in line)
    assert line.endswith(f"DEBUG connectome.plugins: plugin {plugin} loaded")


def test_help_in_a_pipe_is_not_wrapped(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert any(line.startswith("Expand a study file") and line.endswith("(default results/<name>/).")
               for line in out.splitlines())


def test_lesion_help_defaults_match_the_analysis_module():
    from connectome.analysis import lesion as analysis
    from connectome.cli import lesion as cli

    assert (cli.DEFAULT_IMAGES, cli.DEFAULT_BUDGET_S) == (analysis.DEFAULT_IMAGES, analysis.DEFAULT_BUDGET_S)



def test_an_output_path_that_is_a_file_is_one_line(tmp_path, capsys):
    # issue 30: `-o` naming a regular file ended in a traceback
    import yaml

    study = tmp_path / "s.yaml"
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "studies" / "smoke.yaml").read_text())
    study.write_text(yaml.safe_dump(data))
    output = tmp_path / "file"
    output.write_text("not a directory")
    assert main(["run", str(study), "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: Not a directory" in err and str(output) in err
