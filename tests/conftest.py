"""Shared fixtures: few threads (tests run beside each other on 2 cores), fixed seeds.

Every Ray of the suite is on 127.0.0.1. Test modules import ray while being collected, before
any fixture runs, and Ray decides on that first import whether to swap 127.0.0.1 for the public
address; connectome.orchestration.session.keep_ray_on_loopback sets it from here on.
"""
import pytest
import torch

from connectome.orchestration.session import keep_ray_on_loopback

keep_ray_on_loopback()


@pytest.fixture(autouse=True)
def _torch_defaults():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
