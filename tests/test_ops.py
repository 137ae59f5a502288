"""Ops: the head's global pooling (issue 14); the transition's, the ImageNet stem's and the 3x3 conv's faster forms (issue 9)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from connectome.costs import OP_KINDS
from connectome.ops import OPS, CentreTapConv2d, Head, ImageNetStem, Transition, conv3x3


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


def _paper_transition(t: Transition, x: torch.Tensor) -> torch.Tensor:
    """The paper's order: BN-ReLU, 1x1 conv, (dropout), 2x2 average pooling."""
    h = t.conv(t.relu(t.norm(x)))
    return t.pool(t.drop(h) if hasattr(t, "drop") else h)


@pytest.mark.parametrize("hw", [8, 7, 3])
def test_transition_pools_first_with_the_papers_values_and_gradients(hw):
    # Pooling before the 1x1 conv (a quarter of its work) computes the same map: float64, so
    # only rounding could differ. Odd sizes drop the same last row and column in both orders.
    torch.manual_seed(0)
    t = Transition(20, 10).double()
    x = torch.randn(4, 20, hw, hw, dtype=torch.float64)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    seen = []
    t.conv.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[-1]))
    ours = t(a)
    assert seen == [hw // 2]  # the conv ran on the pooled map
    paper = _paper_transition(t, b)
    assert ours.shape == paper.shape == (4, 10, hw // 2, hw // 2)
    torch.testing.assert_close(ours, paper, rtol=1e-12, atol=1e-12)
    weight = torch.randn_like(ours)
    (ours * weight).sum().backward()
    grads = [p.grad.clone() for p in t.parameters()]
    t.zero_grad()
    (paper * weight).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    for ours_grad, p in zip(grads, t.parameters()):
        torch.testing.assert_close(ours_grad, p.grad, rtol=1e-12, atol=1e-12)


def test_transition_with_dropout_keeps_the_papers_order():
    # Dropout acts on each position of the conv's output, so pooling first would change it.
    t = Transition(6, 4, dropout=0.5).train()
    x = torch.randn(2, 6, 4, 4)
    torch.manual_seed(1)
    ours = t(x)
    torch.manual_seed(1)
    assert torch.equal(ours, _paper_transition(t, x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hw", [28, 15])
def test_imagenet_stem_pools_channels_last_with_the_same_values_and_gradients(dtype, hw):
    # On CPU the stem's max pool runs on a channels-last copy (several times faster there), and
    # the ReLU after it. bf16 makes ties common: the gradient must still go where the paper's
    # order (conv, BN, ReLU, pool) in NCHW sends it.
    torch.manual_seed(0)
    stem = ImageNetStem(3, 16).to(dtype)
    x = torch.randn(4, 3, hw, hw, dtype=dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    layouts = []  # the gradient the pool hands back to the BN and conv: NCHW, as they expect

    def watch(module, args, out):
        out.register_hook(lambda grad: layouts.append(grad.is_contiguous()))

    hook = stem.norm0.register_forward_hook(watch)
    ours = stem(a)
    hook.remove()
    nchw = stem.pool0(stem.relu0(stem.norm0(stem.conv0(b))))
    assert ours.is_contiguous() and torch.equal(ours, nchw)
    weight = torch.randn_like(ours)
    (ours * weight).sum().backward()
    grads = [p.grad.clone() for p in stem.parameters()]
    stem.zero_grad()
    (nchw * weight).sum().backward()
    assert layouts == [True]
    assert torch.equal(a.grad, b.grad)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, stem.parameters()))


def test_channels_last_max_pool_routes_ties_like_nchw():
    # Integer values tie in most 3x3 windows: both layouts must pick the same element.
    pool = ImageNetStem(1, 1).pool0
    x = torch.randint(0, 3, (2, 8, 15, 15)).float()
    a, b = x.clone().requires_grad_(), x.contiguous(memory_format=torch.channels_last).requires_grad_()
    out_a, out_b = pool(a), pool(b)
    weight = torch.randn_like(out_a)
    (out_a * weight).sum().backward()
    (out_b * weight).sum().backward()
    assert torch.equal(out_a, out_b) and torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_imagenet_stem_relu_after_the_pool_gives_the_papers_values_and_gradients(memory_format):
    # relu(maxpool(z)) == maxpool(relu(z)), gradients included, also where a window's maximum is 0
    # or negative (the ReLU's zeros tie there): integer pre-activations make both common.
    stem = ImageNetStem(1, 1)
    stem.conv0, stem.norm0 = nn.Identity(), nn.Identity()  # the stem's input is its pre-activation z
    z = torch.randint(-3, 2, (2, 8, 15, 15)).float().contiguous(memory_format=memory_format)
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    ours, papers = stem(a), stem.pool0(torch.relu(b))
    assert torch.equal(ours, papers)
    weight = torch.randn_like(ours)
    (ours * weight).sum().backward()
    (papers * weight).sum().backward()
    assert torch.equal(a.grad, b.grad)
    assert ((z <= 0) <= (a.grad == 0)).all()  # no gradient reaches a position the ReLU zeroed


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("hw", [1, 2, 5])
def test_centre_tap_conv_gives_the_padded_convs_values_and_gradients(hw, memory_format, stride):
    # On a 1x1 map the 3x3 conv's other taps read zero padding: float64, so only rounding could
    # differ; the other taps' gradient is exactly zero in both. Other sizes run nn.Conv2d itself.
    torch.manual_seed(0)
    ours = conv3x3(12, 5, stride).double().to(memory_format=memory_format)
    plain = nn.Conv2d(12, 5, 3, stride=stride, padding=1, bias=False).double().to(memory_format=memory_format)
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(6, 12, hw, hw, dtype=torch.float64).contiguous(memory_format=memory_format)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    seen = []
    with _KernelSpy(seen):
        y = ours(a)
    assert seen == [1 if hw == 1 else 3]  # the centre tap alone runs on 1x1 maps
    reference = plain(b)
    torch.testing.assert_close(y, reference, rtol=1e-12, atol=1e-12)
    weight = torch.randn_like(y)
    (y * weight).sum().backward()
    (reference * weight).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, plain.weight.grad, rtol=1e-12, atol=1e-12)
    if hw == 1:
        for grad in (ours.weight.grad, plain.weight.grad):
            off_centre = grad.clone()
            off_centre[:, :, 1, 1] = 0
            assert torch.count_nonzero(off_centre) == 0


@pytest.mark.parametrize("kernel, padding, hw", [(5, 2, (1, 1)), (2, 1, (1, 1)), (4, 2, (1, 1)), (3, 1, (1, 3))])
def test_centre_tap_conv_equals_the_conv_for_other_kernels_and_shapes(kernel, padding, hw):
    # An odd kernel takes the centre tap on 1x1 maps; even kernels and other shapes run the conv itself.
    torch.manual_seed(0)
    ours = CentreTapConv2d(4, 3, kernel, padding=padding, bias=True).double()
    plain = nn.Conv2d(4, 3, kernel, padding=padding, bias=True).double()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, *hw, dtype=torch.float64)
    torch.testing.assert_close(ours(x), plain(x), rtol=1e-12, atol=1e-12)


class _KernelSpy(torch.overrides.TorchFunctionMode):
    """Records the kernel side of every conv2d called inside it."""

    def __init__(self, seen: list) -> None:
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.conv2d:
            self.seen.append(args[1].shape[-1])
        return func(*args, **(kwargs or {}))


def test_layer_ops_use_the_centre_tap_conv():
    # Every image layer op's 3x3 conv takes the centre-tap path on 1x1 maps (decoder sublayers have no convs).
    for name, op in ((n, op) for n, op in OPS.items() if OP_KINDS.layouts[n] == "maps"):
        convs = [m for m in op(16, 8, bn_size=2, dropout=0.0).modules() if isinstance(m, nn.Conv2d)]
        assert all(isinstance(m, CentreTapConv2d) for m in convs if m.kernel_size == (3, 3)), name
