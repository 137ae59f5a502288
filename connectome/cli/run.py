"""`connectome run STUDY.yaml`: run a study with Ray Tune (or list its trials with --dry-run)."""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from typing import Any

from connectome.errors import Interrupted


# Exit codes: 0 every trial has a result and none failed; 1 nothing was recorded; 2 a usage or
# configuration error (nothing ran); 3 the study ran but some trials failed (see the summary), or
# its local Ray was lost under it (a killed raylet: the message says what happened, what is left
# and the command that resumes it); 130, 143, 129: stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP
# (the message says what is left and the command that resumes it).
EXIT_TRIALS_FAILED = 3  # = connectome.errors.RAY_LOST_EXIT


def register(subparsers) -> None:
    """Add the `run` subcommand."""
    parser = subparsers.add_parser(
        "run", help="run a study file with Ray Tune (or list its trials with --dry-run)",
        description="Expand a study file into trials and run them with Ray Tune (a private local Ray "
                    "on 127.0.0.1 unless --address or RAY_ADDRESS names a cluster). Results go to "
                    "<output>/<name>/ (default results/<name>/).")
    add_study_arguments(parser)
    parser.add_argument("--address", default=None, metavar="HOST:PORT",
                        help="Ray cluster to run the trials on: the head's GCS address as printed by "
                             "`ray start --head` (HOST:6379) or a Ray Client address (ray://HOST:10001); "
                             "default: $RAY_ADDRESS, else a local Ray started for this run")
    parser.add_argument("--resume", action="store_true",
                        help="continue a study whose results directory exists: completed and diverged trials "
                             "are kept, failed and interrupted ones run again from their checkpoints; the study "
                             "definition may only grow (seeds, factor levels, variants, n_trials) or change "
                             "resources")
    parser.add_argument("--restart", action="store_true",
                        help="move the study's old results aside (to <dir>.old-TIME) and start over")
    parser.add_argument("--on-change", choices=("error", "beside"), default="error",
                        help="with --resume, when the results directory holds another definition of the study "
                             "(or an older results layout): stop with an error naming the changes (default), or "
                             "run this definition beside it in <name>-<fingerprint>/")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the trials with params and FLOPs (multiply-adds); train nothing (needs no data)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON on stdout: with --dry-run the planned trials (id, pattern, arch, params, "
                             "macs), otherwise the final summary (progress goes to stderr)")
    parser.add_argument("--dashboard", action="store_true",
                        help="start the Ray dashboard (on 127.0.0.1) with the local Ray")
    parser.add_argument("--no-report", dest="report", action="store_false",
                        help="skip report.md/report.html at the end (`connectome report` writes it later)")
    parser.set_defaults(func=_run)


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """The study file, its -s/--set overrides and -o/--output (shared with `submit`)."""
    parser.add_argument("study", help="study file, e.g. studies/partial_vs_dense.yaml")
    parser.add_argument("-s", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a study key (dotted, value parsed as YAML), e.g. -s train.epochs=2; "
                             "repeatable")
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="parent directory of the results (they go to DIR/<name>/); "
                             "same as -s output=DIR (default: the study file's `output`, else results)")


def study_overrides(args: argparse.Namespace) -> list[str]:
    """-s/--set pairs, with -o/--output as the last (winning) one."""
    return list(args.overrides) + ([f"output={args.output}"] if args.output else [])


def _run(args: argparse.Namespace) -> int:
    from connectome.console import make_console
    from connectome.study import load_study

    study = load_study(args.study, study_overrides(args))
    if args.dry_run:
        return _dry_run(study, args)
    from connectome.orchestration.driver import failed_count, run_study

    # With --json stdout carries only the summary: the live view, messages and anything else
    # printed meanwhile (Ray's copies of worker output under -v) go to stderr.
    console = make_console(stderr=args.json, quiet=args.verbosity < 0)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        try:
            frame = run_study(study, address=args.address, resume=args.resume, restart=args.restart,
                              on_change=args.on_change, dashboard=args.dashboard, report=args.report,
                              console=console)
        except Interrupted as err:
            raise err.with_detail(f"{err.detail}; resume with: {resume_command(args)}") from None
    if args.json:
        print(json.dumps(summary_json(study, frame), indent=1))
    elif args.verbosity < 0:
        print(counts_line(frame))
    if failed_count(frame):
        return EXIT_TRIALS_FAILED
    return 0 if len(frame) else 1


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this run: the same study, overrides and cluster, with --resume."""
    words = ["connectome", "run", args.study, *(w for o in args.overrides for w in ("-s", o))]
    words += ["-o", args.output] if args.output else []
    words += ["--address", args.address] if args.address else []
    return shlex.join([*words, "--resume"])


def _dry_run(study, args: argparse.Namespace) -> int:
    """Print the plan as tables, or as JSON with --json."""
    from connectome.study.dryrun import plan_json, print_plan

    if args.json:
        print(json.dumps(plan_json(study), indent=1))
    else:
        print_plan(study)
    return 0


def summary_json(study, frame) -> dict[str, Any]:
    """The study's outcome as data: where, its answer in words, how many trials per status, and every trial's row."""
    from pathlib import Path

    from connectome.orchestration.driver import study_answer_lines

    # pandas writes NaN as null, numpy values as numbers, timestamps in ISO 8601.
    rows = json.loads(frame.to_json(orient="records", date_format="iso")) if len(frame) else []
    statuses = frame["status"].value_counts().to_dict() if "status" in frame else {}
    return {"study": study.name, "results_dir": str(Path(study.output) / study.name),
            "answer": study_answer_lines(study, frame), "trials": len(frame),
            "status_counts": {str(k): int(v) for k, v in statuses.items()}, "rows": rows}


def counts_line(frame) -> str:
    """One line: trials per status."""
    statuses = frame["status"].value_counts().to_dict() if "status" in frame else {}
    return f"{len(frame)} trials: " + ", ".join(f"{v} {k}" for k, v in statuses.items())

