"""`connectome submit` / `status` / `stop`: run a study as a Ray job on a cluster, follow it, stop it.

`status` also reads a results directory on this machine (connectome/orchestration/status.py),
without Ray: the argument decides, an existing directory or a job id.

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

    status = subparsers.add_parser(
        "status", help="show a study's progress (a results directory) or a submitted job's (a Ray job id)",
        description="Given a results directory (results/NAME): the study's trials per status, the running trials "
                    "with their epoch and batch, the driver holding the directory and the time left, read from "
                    "the directory alone (running or finished, no Ray). Given a job id: the status of the Ray "
                    "job `connectome submit` started.")
    status.add_argument("job_id", metavar="RESULTS_DIR|JOB_ID",
                        help="a study's results directory, e.g. results/smoke, or the id `connectome submit` "
                             "printed, e.g. raysubmit_...")
    add_dashboard_argument(status)
    status.add_argument("--follow", action="store_true", help="a job: stream its logs until it ends")
    status.add_argument("--logs", action="store_true", help="a job: print its logs so far")
    status.add_argument("--json", action="store_true",
                        help="print JSON: a directory's counts, running trials, driver and estimate; a job's id, "
                             "status, message, entrypoint and times")
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
    if Path(args.job_id).is_dir():
        return _local_status(args)
    if "/" in args.job_id or Path(args.job_id).exists():  # a job id is a bare name
        raise ConfigError(f"{args.job_id}: no such results directory (nor a job id)")
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


def _local_status(args: argparse.Namespace) -> int:
    """A results directory on this machine: read it, no Ray."""
    from connectome.console import make_console
    from connectome.orchestration.status import print_status, read_status, status_json

    if args.follow or args.logs:
        raise ConfigError(f"{args.job_id} is a results directory: --follow and --logs are for a Ray job id")
    status = read_status(args.job_id)
    if args.json:
        print(json.dumps(status_json(status), indent=1))
    else:
        print_status(status, make_console())
    return 0


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
