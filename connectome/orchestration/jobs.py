"""The Ray Jobs API client of `connectome submit`, `status` and `stop`: connect, follow, describe.

Ray is imported only inside these functions, so the CLI's `--help` stays light.
"""
from __future__ import annotations

import os
import time

from connectome.errors import ConfigError

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def dashboard_address(address: str | None) -> str:
    """The Jobs API address: the flag, $RAY_ADDRESS when it is an http address, else localhost."""
    address = address or os.environ.get("RAY_ADDRESS") or DEFAULT_DASHBOARD
    if not address.startswith(("http://", "https://")):
        raise ConfigError(f"--dashboard-url (or $RAY_ADDRESS) {address!r}: the Jobs API needs the head's dashboard URL, "
                          "e.g. http://HEAD:8265 (HOST:6379 is the GCS address `connectome run --address` takes)")
    return address


def use_ray_token() -> None:
    """Send Ray's auth token (~/.ray/auth_token, $RAY_AUTH_TOKEN) like ray.init does.

    Ray enables token authentication on new clusters, but the Jobs client only sends the token
    when this process is in token mode; ray.init switches it on when a token exists, the client not.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def client(address: str | None):
    """A JobSubmissionClient; an unreachable head is a one-line error."""
    from ray.job_submission import JobSubmissionClient

    use_ray_token()
    url = dashboard_address(address)
    try:
        return JobSubmissionClient(url)
    except Exception as err:  # noqa: BLE001 - connection refused, auth errors, bad URLs: one line each
        raise ConfigError(f"cannot reach the Ray dashboard at {url}: {str(err).splitlines()[0]}") from None


def job_json(job_id: str, info) -> dict:
    """A job's state as data (times in milliseconds since the epoch, as Ray gives them)."""
    return {"job_id": job_id, "status": status_name(info.status), "message": info.message,
            "entrypoint": info.entrypoint, "start_time_ms": info.start_time, "end_time_ms": info.end_time}


def follow(jobs, job_id: str, poll_s: float = 2.0) -> int:
    """Print new log text until the job ends; exit code 0 only if it succeeded."""
    shown = 0
    while True:
        status = status_name(jobs.get_job_status(job_id))
        logs = jobs.get_job_logs(job_id)
        print(logs[shown:], end="", flush=True)
        shown = len(logs)
        if status in TERMINAL:
            print(f"{job_id}: {status}")
            return 0 if status == "SUCCEEDED" else 1
        time.sleep(poll_s)


def status_name(status) -> str:
    """A JobStatus as its plain name (SUCCEEDED, RUNNING, ...)."""
    return str(getattr(status, "value", status))
