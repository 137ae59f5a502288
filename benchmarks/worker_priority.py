"""CPU share of a trial worker of a local Ray next to other work (issue 9): Ray's niceness 15 vs the driver's.

Ray starts its workers at niceness 15 unless told otherwise (`worker_niceness`), so a trial gets
a fraction of a CPU whenever anything at the user's own priority is busy: a notebook, a compile,
or a plain-PyTorch script run beside it. This starts a local Ray per setting, lets one actor
spin on matmuls for `--seconds` while one busy process per CPU competes at this process's
priority, and prints the actor's CPU time over its wall time. Settings alternate per round.

    python benchmarks/worker_priority.py --rounds 2
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from connectome.orchestration.session import keep_ray_on_loopback

BUSY = "while True: pass"


def measure(niceness: int | None, seconds: float) -> dict:
    """One local Ray (worker_niceness as given, None: Ray's default); the actor's CPU share under contention."""
    import ray

    config = {} if niceness is None else {"worker_niceness": niceness}
    ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=40,
             log_to_driver=False, _system_config=config)
    try:
        @ray.remote(num_cpus=1)
        class Spinner:
            def spin(self, seconds: float) -> dict:
                import torch

                a = torch.randn(256, 256)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                while time.perf_counter() - wall0 < seconds:
                    a @ a
                return {"nice": os.nice(0), "cpu": time.process_time() - cpu0, "wall": time.perf_counter() - wall0}

        actor = Spinner.remote()
        ray.get(actor.spin.remote(0.1))  # the worker is up and torch imported
        rivals = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(os.cpu_count() or 1)]
        try:
            return ray.get(actor.spin.remote(seconds))
        finally:
            for rival in rivals:
                rival.kill()
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    keep_ray_on_loopback()
    settings = {"Ray default": None, "worker_niceness 0": 0}
    shares: dict[str, list[float]] = {name: [] for name in settings}
    for r in range(args.rounds):
        for name in (list(settings) if r % 2 == 0 else list(settings)[::-1]):
            out = measure(settings[name], args.seconds)
            shares[name].append(out["cpu"] / out["wall"])
            print(f"round {r + 1} {name:18s} worker nice {out['nice']:2d}: {out['cpu']:.2f} CPU s in "
                  f"{out['wall']:.2f} s = {out['cpu'] / out['wall']:.0%} of a CPU; load {os.getloadavg()[0]:.2f}",
                  flush=True)
    for name, values in shares.items():
        print(f"{name:18s} CPU share per round: {', '.join(f'{v:.0%}' for v in values)}")


if __name__ == "__main__":
    main()
