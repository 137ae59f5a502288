"""`connectome submit` / `status` / `stop`: run a study as a Ray job on a cluster, follow it, stop it.

The job is `connectome run STUDY` executed on the cluster with this directory's code and
studies shipped as the job's working directory (Ray Jobs API); `job_files` chooses what is
shipped (what git would commit, never secrets, data or results). Give `--output` a path every
node can reach (shared storage) to find the results outside the job's temporary working directory.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from connectome.cli.job_files import check_shipped, select_job_files, stage_job_files
from connectome.cli.run import add_study_arguments
from connectome.errors import ConfigError
from connectome.orchestration.jobs import (DEFAULT_DASHBOARD, TERMINAL, client, dashboard_address, follow, job_json,
                                          status_name)



def register(subparsers) -> None:
    """Add the `submit`, `status` and `stop` subcommands."""
    parser = subparsers.add_parser(
        "submit", help="submit a study to a Ray cluster as a job (prints the job id)",
        description="Submit `connectome run STUDY` to a Ray cluster through the Jobs API, shipping the "
                    "current directory as the job's working directory. Give -o/--output a path every "
                    "node can reach (shared storage) to find the results outside the job's temporary "
                    "working directory.")
    add_study_arguments(parser)
    add_dashboard_argument(parser)
    parser.add_argument("--resume", action="store_true", help="pass --resume to `connectome run`")
    # This machine's interpreter path means nothing on the cluster's nodes.
    parser.add_argument("--python", default="python",
                        help="Python interpreter on the cluster with connectome's dependencies (default: python)")
    parser.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    parser.set_defaults(func=_submit)

    status = subparsers.add_parser("status", help="show (or follow) a submitted study job",
                                   description="Print the status of a Ray job started by `connectome submit`.")
    status.add_argument("job_id", help="the id `connectome submit` printed, e.g. raysubmit_...")
    add_dashboard_argument(status)
    status.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    status.add_argument("--logs", action="store_true", help="print the job's logs so far")
    status.add_argument("--json", action="store_true",
                        help="print the job's id, status, message, entrypoint and times as JSON")
    status.set_defaults(func=_status)

    stop = subparsers.add_parser("stop", help="stop a submitted study job",
                                 description="Ask Ray to stop a job started by `connectome submit`; finished "
                                             "trials keep their results, and `submit --resume` continues it.")
    stop.add_argument("job_id", help="the id `connectome submit` printed, e.g. raysubmit_...")
    add_dashboard_argument(stop)
    stop.add_argument("--wait", action="store_true", help="wait until the job has stopped")
    stop.set_defaults(func=_stop)


def add_dashboard_argument(parser: argparse.ArgumentParser) -> None:
    """--dashboard-url: where the head's Jobs API listens (not the GCS address `run --address` takes)."""
    parser.add_argument("--dashboard-url", default=None, metavar="URL",
                        help=f"the head's dashboard (Jobs API), e.g. http://HEAD:8265; default: $RAY_ADDRESS, "
                             f"else {DEFAULT_DASHBOARD}")
    # Old name, kept working: it meant the same URL here but a GCS address on `run`.
    parser.add_argument("--address", dest="dashboard_url", help=argparse.SUPPRESS)


def entrypoint(args: argparse.Namespace) -> str:
    """The `connectome run` command line the job executes in the shipped directory."""
    from connectome.study import load_study

    # An absolute path: the job runs in a temporary copy of this directory.
    output = [f"output={Path(args.output).resolve()}"] if args.output else []
    overrides = list(args.overrides) + output
    load_study(args.study, overrides)  # fail here, not on the cluster
    study = Path(args.study).resolve()
    try:
        relative = study.relative_to(Path.cwd().resolve())
    except ValueError:
        raise ConfigError(f"{args.study}: the study file must be inside the current directory, which is shipped "
                          "with the job") from None
    words = [args.python, "-m", "connectome", "run", str(relative)]
    words += [w for o in overrides for w in ("--set", o)] + (["--resume"] if args.resume else [])
    return shlex.join(words)


def _submit(args: argparse.Namespace) -> int:
    command = entrypoint(args)
    jobs = client(args.dashboard_url)
    root = Path.cwd()
    files = select_job_files(root)
    check_shipped(root, files, Path(args.study))
    # Ray packs and uploads the working dir inside submit_job, so the staged copy can go after it.
    with tempfile.TemporaryDirectory(prefix="connectome-job-") as staged:
        stage_job_files(root, files, staged)
        try:
            job_id = jobs.submit_job(entrypoint=command, runtime_env={"working_dir": staged})
        except RuntimeError as err:  # the Jobs API answers errors as RuntimeError with the HTTP reply
            raise ConfigError(f"the cluster refused the job: {str(err).splitlines()[0]}") from None
    print(job_id)
    print(f"follow it with: connectome status {job_id} --dashboard-url {dashboard_address(args.dashboard_url)} "
          "--follow",
          file=sys.stderr)
    return follow(jobs, job_id) if args.follow else 0


def _status(args: argparse.Namespace) -> int:
    jobs = client(args.dashboard_url)
    try:
        info = jobs.get_job_info(args.job_id)
    except RuntimeError as err:
        raise ConfigError(f"job {args.job_id}: {str(err).splitlines()[0]}") from None
    if args.follow:
        return follow(jobs, args.job_id)
    if args.logs:
        print(jobs.get_job_logs(args.job_id), end="")
    if args.json:
        print(json.dumps(job_json(args.job_id, info), indent=1))
    else:
        print(f"{args.job_id}: {status_name(info.status)}" + (f" ({info.message})" if info.message else ""))
    return 0 if status_name(info.status) != "FAILED" else 1


def _stop(args: argparse.Namespace) -> int:
    """Request the job's stop; with --wait, poll until Ray reports it ended."""
    jobs = client(args.dashboard_url)
    try:
        jobs.stop_job(args.job_id)
    except RuntimeError as err:
        raise ConfigError(f"job {args.job_id}: {str(err).splitlines()[0]}") from None
    status = status_name(jobs.get_job_status(args.job_id))
    while args.wait and status not in TERMINAL:
        time.sleep(1.0)
        status = status_name(jobs.get_job_status(args.job_id))
    print(f"{args.job_id}: {status}")
    return 0
