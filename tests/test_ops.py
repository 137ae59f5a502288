"""Ops: the head's global pooling is a mean over H, W, equal to adaptive_avg_pool2d (issue 14)."""
import pytest
import torch
import torch.nn.functional as F

from connectome.ops import Head


@pytest.mark.parametrize("shape", [(8, 24, 8, 8), (3, 342, 4, 4), (5, 7, 3, 3), (2, 5, 1, 1)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_head_pooling_equals_adaptive_avg_pool_values_and_gradients(shape, memory_format):
    # The mean has a deterministic CUDA backward; adaptive_avg_pool2d's has none.
    torch.manual_seed(0)
    head = Head(shape[1], 10)
    x = torch.randn(*shape).contiguous(memory_format=memory_format)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = head(a)
    reference = head.classifier(F.adaptive_avg_pool2d(F.relu(head.norm(b)), 1).flatten(1))
    assert torch.equal(ours, reference)
    ours.sum().backward()
    reference.sum().backward()
    assert torch.equal(a.grad, b.grad)
