"""`connectome run STUDY.yaml`: run a study with Ray Tune (or list its trials with --dry-run)."""
from __future__ import annotations

import argparse


# Exit codes: 0 every trial has a result and none failed; 1 nothing was recorded; 2 a usage or
# configuration error (nothing ran); 3 the study ran but some trials failed (see the summary).
EXIT_TRIALS_FAILED = 3


def register(subparsers) -> None:
    """Add the `run` subcommand."""
    parser = subparsers.add_parser(
        "run", help="run a study file with Ray Tune",
        description="Expand a study file into trials and run them with Ray Tune (a private local Ray "
                    "on 127.0.0.1 unless --address or RAY_ADDRESS names a cluster). Results go to "
                    "<output>/<name>/ (default results/<name>/).")
    add_study_arguments(parser)
    parser.add_argument("--address", default=None,
                        help="Ray cluster to use (HOST:6379 or ray://HOST:10001); default: $RAY_ADDRESS, "
                             "else a local Ray started for this run")
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
                        help="print the trials with params and FLOPs; train nothing (needs no data)")
    parser.add_argument("--dashboard", action="store_true",
                        help="start the Ray dashboard (on 127.0.0.1) with the local Ray")
    parser.add_argument("--no-report", dest="report", action="store_false",
                        help="skip report.md/report.html at the end (`connectome report` writes it later)")
    parser.set_defaults(func=_run)


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """The study file and its --set overrides (shared with `submit`)."""
    parser.add_argument("study", help="study file, e.g. studies/partial_vs_dense.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a study key (dotted, value parsed as YAML), e.g. --set train.epochs=2; "
                             "repeatable")


def _run(args: argparse.Namespace) -> int:
    from connectome.study import load_study

    study = load_study(args.study, args.overrides)
    if args.dry_run:
        from connectome.study.dryrun import print_plan

        print_plan(study)
        return 0
    from connectome.orchestration.driver import failed_count, run_study

    frame = run_study(study, address=args.address, resume=args.resume, restart=args.restart,
                      on_change=args.on_change, dashboard=args.dashboard, report=args.report)
    if failed_count(frame):
        return EXIT_TRIALS_FAILED
    return 0 if len(frame) else 1
