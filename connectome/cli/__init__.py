"""`connectome` command line: one module per subcommand, registered below.

Each module defines `register(subparsers)` that adds its parser and sets `func`.
Modules import heavy libraries (torch, ray) inside their handlers so `--help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from connectome import __version__
from connectome.console import UNWRAPPED_WIDTH
from connectome.errors import ConnectomeError, Interrupted

COMMAND_MODULES = (
    "connectome.cli.graph",
    "connectome.cli.train",
    "connectome.cli.run",
    "connectome.cli.submit",
    "connectome.cli.report",
    "connectome.cli.lesion",
    "connectome.cli.wiring",
    "connectome.cli.export",
)

DESCRIPTION = """\
Study how the wiring inside a network's blocks (dense, partial, residual, sparse, random or your
own graph) changes accuracy, size and cost. Inspect a wiring with `graph`, train one network with
`train`, run a whole study file (a grid or an Optuna search, on this machine or a Ray cluster)
with `run` or `submit`, and turn its results into tables and figures with `report`."""

EPILOG = """\
examples:
  connectome graph --pattern partial --depth 40 --growth 12
  connectome train --dataset synthetic --pattern partial -s arch.depth=10 -s data.synthetic.size=8 --epochs 2
  connectome run studies/smoke.yaml --dry-run
  connectome run studies/partial_vs_dense.yaml -s train.epochs=2 -o runs
  connectome status runs/partial_vs_dense
  connectome report results/partial_vs_dense

`connectome COMMAND --help` describes each command's options."""


class HelpFormatter(argparse.HelpFormatter):
    """argparse's layout, wrapped to the terminal's width, or not wrapped at all in a pipe."""

    def __init__(self, prog: str, **kwargs) -> None:
        if not sys.stdout.isatty():
            kwargs.setdefault("width", UNWRAPPED_WIDTH)
        super().__init__(prog, **kwargs)


class RawDescriptionFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The top level's description and examples keep their own line breaks."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="connectome", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=RawDescriptionFormatter)
    parser.add_argument("--version", action="version", version=f"connectome {__version__}",
                        help="print the version and exit")
    add_verbosity_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do (`connectome COMMAND --help` for its options)")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue  # subcommand not installed in this build
        module.register(sub)
    for command in sub.choices.values():  # a command's examples (its epilog) keep their line breaks
        command.formatter_class = RawDescriptionFormatter if command.epilog else HelpFormatter
        add_verbosity_arguments(command)
    return parser


def add_verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    """-q / -v, accepted before or after the subcommand (SUPPRESS keeps one from erasing the other)."""
    group = parser.add_argument_group("output")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="print only warnings, errors and the final result")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more detail: -v adds debug messages and the Ray workers' own output, "
                            "-vv adds debug messages of the libraries (Ray, Optuna)")


def verbosity(args: argparse.Namespace) -> int:
    """-1 quiet, 0 default, 1 (-v) or more."""
    return -1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; user errors print one line, no traceback."""
    from connectome.plugins import load_entry_points

    try:
        load_entry_points()  # before the parser lists patterns in --pattern help
        args = build_parser().parse_args(argv)
    except ConnectomeError as err:
        print(f"connectome: error: {err}", file=sys.stderr)
        return 2
    from connectome.console import setup_logging

    args.verbosity = verbosity(args)
    setup_logging(args.verbosity)
    try:
        return int(args.func(args) or 0)
    except ConnectomeError as err:
        print(f"connectome {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:  # a signal stopped it: 128 + the signal, as a shell reports it
        print(f"connectome {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as err:  # the file system refused: read-only, full, a file where a directory must be
        where = f": {err.filename}" if err.filename else ""
        print(f"connectome {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"connectome {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
