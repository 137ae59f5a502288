"""Shared fixtures: few threads (tests run beside each other on 2 cores), fixed seeds."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_defaults():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
