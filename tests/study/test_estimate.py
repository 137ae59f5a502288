"""The time a study has left: measured pace, multiply-adds at the measured throughput, trials at once."""
import pytest

from connectome.study.estimate import Sample, Work, estimate, estimate_by_count, slots
from connectome.study.schema import Resources
from connectome.training.resolve import EAGER_FLOPS


@pytest.mark.parametrize("resources, to_run, cpus, expected", [
    (Resources(cpu=1), 4, 2, (1.0, 2)),
    (Resources(cpu=1), 1, 8, (1.0, 1)),  # never more at once than are left
    (Resources(cpu=2), 8, 8, (2.0, 4)),
    (Resources(cpu=1, max_concurrent=1), 4, 8, (1.0, 1)),
    (Resources(), 1, 4, (4.0, 1)),  # auto: the CPUs go to the last trial
    (Resources(), 6, 4, (1.0, 4)),
    (Resources(cpu=1, gpu=0.5), 6, 16, (1.0, 2)),  # one GPU assumed, half each
])
def test_slots_resolve_resources_as_the_driver_does(resources, to_run, cpus, expected):
    assert slots(resources, to_run, cpus) == expected


def test_finished_trials_set_the_pace_and_trials_at_once_divide_it():
    finished = [Sample(flops=1e9, seconds=10.0), Sample(flops=3e9, seconds=30.0)]  # 10 s per GFLOP
    left = [Work(2e9, "fp32"), Work(2e9, "fp32"), Work(4e9, "bf16")]
    eta = estimate(left, finished, Resources(cpu=1), cpus=2)
    assert eta.seconds == pytest.approx(80.0 / 2) and (eta.trials, eta.at_once) == (3, 2)
    assert not eta.lower_bound and "pace of the 2 finished trials" in eta.describe()
    assert eta.describe().startswith("about 40s left for 3 trials, 2 at a time")


def test_without_finished_trials_the_measured_throughput_gives_a_lower_bound():
    left = [Work(EAGER_FLOPS["fp32"] * 60, "fp32"), Work(EAGER_FLOPS["bf16"] * 120, "bf16")]
    eta = estimate(left, [], Resources(cpu=2), cpus=2)  # one at a time, 2 threads each
    assert eta.seconds == pytest.approx((60 + 120) / 2) and eta.at_once == 1 and eta.lower_bound
    assert eta.describe().startswith("at least 1m30s left for 2 trials") and "2 threads per trial" in eta.basis


def test_a_gpu_study_has_no_estimate_before_a_trial_finished():
    gpu = Resources(cpu=1, gpu=1)
    assert estimate([Work(1e9, "bf16")], [], gpu, cpus=4) is None
    assert estimate([Work(1e9, "bf16")], [Sample(1e9, 7.0)], gpu, cpus=4).seconds == pytest.approx(7.0)


def test_a_search_counts_trials_at_their_mean_time():
    eta = estimate_by_count(6, [10.0, 20.0, None, float("nan")], Resources(cpu=1), cpus=3)
    assert eta.seconds == pytest.approx(15.0 * 6 / 3) and (eta.trials, eta.at_once) == (6, 3)
    assert estimate_by_count(6, [], Resources(cpu=1), cpus=3) is None


def test_running_trials_speed_sets_the_pace_before_one_finished():
    running = [Sample(flops=2e9, seconds=4.0)]  # 2 s per GFLOP of training passes
    eta = estimate([Work(3e9, "fp32")], [], Resources(cpu=1, gpu=1), cpus=2, running=running)
    assert eta.seconds == pytest.approx(6.0) and eta.lower_bound and "speed of the 1 running trial" in eta.basis
    finished = [Sample(flops=1e9, seconds=1.0)]  # a finished trial's wall time wins
    assert estimate([Work(3e9, "fp32")], finished, Resources(cpu=1), cpus=2, running=running).seconds == 3.0
