"""SIGINT, SIGTERM and SIGHUP during a study run (the real-process runs: tests/cli/test_run.py)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from connectome.errors import Interrupted
from connectome.orchestration.interrupts import TUNE_SIGINT, Interrupts, SignalInterrupt


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_outside_a_tune_run_stops_at_once_with_its_exit_code(sig, code):
    with Interrupts() as interrupts:
        with pytest.raises(SignalInterrupt) as raised:
            os.kill(os.getpid(), sig)
            time.sleep(5)
        assert raised.value.signum == sig
        with pytest.raises(Interrupted, match=f"interrupted by {signal.Signals(sig).name}") as stopped:
            interrupts.check()
        assert stopped.value.exit_code == code


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_inside_a_tune_run_the_first_signal_is_tunes_graceful_stop_and_a_second_one_forces(sig):
    graceful = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: graceful.append(True))  # as Tune's fit() installs it
    try:
        with Interrupts() as interrupts:
            assert os.environ[TUNE_SIGINT] == "1"  # Tune leaves SIGINT to us
            with interrupts.tune_run():
                os.kill(os.getpid(), sig)
                time.sleep(0.2)
                assert graceful == [True]  # Tune winds its run down; nothing raised here
                with pytest.raises(SignalInterrupt):
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)
            with pytest.raises(Interrupted) as stopped:
                interrupts.check()
            assert stopped.value.signum == sig  # the first signal decides the exit code
        assert signal.getsignal(sig) is not interrupts._handle  # handlers restored
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_no_signal_no_interruption():
    with Interrupts() as interrupts:
        interrupts.check()


def test_while_ray_starts_a_signal_waits_and_its_processes_are_deaf_to_a_hangup():
    """A signal in the middle of ray.init would leave a half-started Ray; a closed terminal's SIGHUP to the process
    group killed the local Ray's GCS and raylet under the driver (issue 30)."""
    import subprocess
    import sys

    code = "import signal; print(signal.SIGHUP in signal.pthread_sigmask(signal.SIG_BLOCK, []))"
    with Interrupts() as interrupts:
        with pytest.raises(Interrupted, match="interrupted by SIGTERM") as stopped:
            with interrupts.starting_ray():
                child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGHUP)
                time.sleep(0.2)  # nothing raised while Ray starts
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a handler ray.init left behind
        assert stopped.value.exit_code == 143  # the first signal
        assert child.stdout.strip() == "True"  # what Ray starts keeps SIGHUP blocked
        assert signal.getsignal(signal.SIGTERM) == interrupts._handle
        assert signal.SIGHUP not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the driver takes it again


def test_a_lost_ray_stops_at_once_even_inside_a_tune_run():
    import threading

    from connectome.errors import ray_lost

    graceful = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: graceful.append(True))
    try:
        with Interrupts() as interrupts, interrupts.tune_run():
            with pytest.raises(Interrupted, match="stopped: the raylet died") as stopped:
                threading.Thread(target=interrupts.stop_now, args=(ray_lost("the raylet died"),)).start()
                time.sleep(5)
        assert stopped.value.exit_code == 3 and graceful == []  # no graceful stop: Ray is gone
    finally:
        signal.signal(signal.SIGUSR1, previous)
