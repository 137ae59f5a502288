"""`connectome` command line: one module per subcommand, registered below.

Each module defines `register(subparsers)` that adds its parser and sets `func`.
Modules import heavy libraries (torch, ray) inside their handlers so `--help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from connectome.errors import ConnectomeError

COMMAND_MODULES = (
    "connectome.cli.graph",
    "connectome.cli.train",
    "connectome.cli.run",
    "connectome.cli.submit",
    "connectome.cli.report",
    "connectome.cli.lesion",
    "connectome.cli.export",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="connectome", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue  # subcommand not installed in this build
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; user errors print one line, no traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConnectomeError as err:
        print(f"connectome {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"connectome {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
