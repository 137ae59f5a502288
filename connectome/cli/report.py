"""`connectome report results/<study>`: summary, comparisons and figures as report.md/.html."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from connectome.store.layout import StudyDir


def register(subparsers) -> None:
    """Add the `report` subcommand."""
    parser = subparsers.add_parser(
        "report", help="write report.md and report.html for a results directory",
        description="Summarise a results directory (finished or still running): the answer in words, trial counts, "
                    "per-group means with 95% intervals, paired pattern comparisons, Pareto "
                    "front and the paper's figures (PNG and SVG under figures/).")
    parser.add_argument("results_dir", help="folder written by `connectome run`, e.g. results/smoke")
    parser.add_argument("--metric", default=None,
                        help="trial column to summarise and compare "
                             "(default: test_error; test_bpb for language models)")
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="folder for the report and figures (default: the results directory)")
    parser.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # the old name
    parser.add_argument("--include-stopped", action="store_true",
                        help="use trials a scheduler stopped early in the statistics (default: listed, left out)")
    parser.add_argument("--json", action="store_true",
                        help="print the written files and the trial counts per status as JSON")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from connectome.analysis import load, results_answer, write_report
    from connectome.errors import ConfigError

    refused: list[str] = []
    report = write_report(args.results_dir, metric=args.metric, out_dir=args.output, refused=refused,
                          include_stopped=args.include_stopped)
    results = load(args.results_dir)
    answer = [s.text for s in results_answer(results, metric=args.metric, include_stopped=args.include_stopped)]
    if args.json:
        print(json.dumps(report_json(report, results.counts, answer), indent=1))
    elif args.verbosity >= 0:
        print("\n".join(answer))  # what the report opens with
        print(results.describe_counts())
        print(f"wrote {report} and {StudyDir(report.parent).report_html}")
    if refused:  # the report stands without them, but a tampered results dir must not pass silently
        more = f" (and {len(refused) - 1} more, listed in the report)" if len(refused) > 1 else ""
        raise ConfigError(refused[0] + more)
    return 0


def report_json(report: Path, counts: dict[str, int], answer: list[str] | None = None) -> dict:
    """What `report` wrote, the study's answer in words, and the trial counts per status it summarised."""
    sd = StudyDir(report.parent)
    figures = sd.figures
    return {"markdown": str(report), "html": str(sd.report_html),
            "figures": sorted(str(p) for p in figures.glob("*")) if figures.is_dir() else [],
            "answer": answer or [], "counts": {str(k): int(v) for k, v in counts.items()}}
