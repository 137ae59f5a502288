"""`connectome report results/<study>`: summary, comparisons and figures as report.md/.html."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the `report` subcommand."""
    parser = subparsers.add_parser(
        "report", help="write report.md and report.html for a results directory",
        description="Summarise a results directory (finished or still running): trial counts, "
                    "per-group means with 95% intervals, paired pattern comparisons, Pareto "
                    "front and the paper's figures (PNG and SVG under figures/).")
    parser.add_argument("results_dir", help="folder written by `connectome run`, e.g. results/smoke")
    parser.add_argument("--metric", default="test_error",
                        help="trial column to summarise and compare (default: test_error)")
    parser.add_argument("--out", default=None,
                        help="folder for the report and figures (default: the results directory)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from connectome.analysis import load, write_report
    from connectome.errors import ConfigError

    refused: list[str] = []
    report = write_report(args.results_dir, metric=args.metric, out_dir=args.out, refused=refused)
    print(load(args.results_dir).describe_counts())
    print(f"wrote {report} and {report.with_suffix('.html')}")
    if refused:  # the report stands without them, but a tampered results dir must not pass silently
        more = f" (and {len(refused) - 1} more, listed in the report)" if len(refused) > 1 else ""
        raise ConfigError(refused[0] + more)
    return 0
