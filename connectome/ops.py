"""Operations a spec names: layer ops, stems, transitions and the head.

Each op is an nn.Module that can also report its complexity without being built
(`Op.complexity(...)`), so studies reject over-budget candidates before training.
Layer ops split into `head` (recomputed in memory-efficient mode) and `tail`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Cx:
    """Complexity of a piece of network: parameters, multiply-adds, stored activations."""

    params: int = 0
    flops: int = 0  # multiply-adds (MACs), the name the record's column keeps
    acts: int = 0

    @property
    def activations(self) -> int:
        """Stored activation elements per sample (alias of acts)."""
        return self.acts

    def __add__(self, other: Cx) -> Cx:
        return Cx(self.params + other.params, self.flops + other.flops, self.acts + other.acts)


def conv_cx(cin: int, cout: int, k: int, hw_out: int) -> Cx:
    """A bias-free k x k conv producing hw_out x hw_out maps."""
    params = cin * cout * k * k
    return Cx(params, params * hw_out * hw_out, cout * hw_out * hw_out)


def norm_act_cx(c: int, hw: int) -> Cx:
    """BN (weight and bias) then an in-place ReLU: one stored map of c channels."""
    return Cx(2 * c, 0, c * hw * hw)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(x, p, training) if p > 0 else x


class CentreTapConv2d(nn.Conv2d):
    """A zero-padded "same" conv (odd square kernel) that runs on 1x1 maps as a 1x1 conv with its centre tap.

    On a 1x1 map every other tap reads zero padding, whatever the stride, so the output and the
    gradients are the same up to rounding (the other taps' gradient is exactly zero either way);
    oneDNN's 3x3 kernels take about 4x longer there on CPU, forward and backward (docs/benchmarks.md,
    "Layout and exact rewrites"; not measured on GPUs). DenseNets with the ImageNet stem on 28x28
    inputs run their last block at 1x1. Complexity counts keep every tap, as papers count.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        odd_square = self.kernel_size == (k, k) and k % 2 == 1
        same = odd_square and self.padding == (k // 2, k // 2) and self.dilation == (1, 1)
        if same and self.padding_mode == "zeros" and x.shape[-2:] == (1, 1):
            centre = self.weight[:, :, k // 2:k // 2 + 1, k // 2:k // 2 + 1]  # (C_out, C_in/groups, 1, 1)
            return F.conv2d(x, centre, self.bias, 1, 0, 1, self.groups)  # (B, C_out, 1, 1)
        return super().forward(x)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free, zero-padded 3x3 conv of a layer op or a residual unit."""
    return CentreTapConv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class ConvOp(nn.Module):
    """BN-ReLU-Conv3x3, the basic DenseNet layer (names as torchvision's)."""

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(cin, cout)
        self.p = dropout

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(self.conv1(self.relu1(self.norm1(x))), self.p, self.training)

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        return h

    @property
    def in_conv(self) -> nn.Conv2d:
        """The conv that reads the aggregated input."""
        return self.conv1

    @staticmethod
    def complexity(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
        cx = norm_act_cx(cin, hw) + conv_cx(cin, cout, 3, hw)
        return Cx(cx.params, cx.flops, cout * hw * hw) if memory_efficient else cx


class BottleneckOp(nn.Module):
    """DenseNet-B: BN-ReLU-Conv1x1 to bn_size*k channels, then BN-ReLU-Conv3x3."""

    # Memory-efficient mode also recomputes the tail's BN-ReLU (see GraphNode.forward).
    recompute_tail = True

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()
        mid = bn_size * cout
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(mid, cout)
        self.p = dropout

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(self.conv1(self.relu1(self.norm1(x))), self.p, self.training)

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        return dropout(self.conv2(self.relu2(self.norm2(h))), self.p, self.training)

    @property
    def in_conv(self) -> nn.Conv2d:
        return self.conv1

    @staticmethod
    def complexity(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
        mid = bn_size * cout
        head = norm_act_cx(cin, hw) + conv_cx(cin, mid, 1, hw)
        tail = norm_act_cx(mid, hw) + conv_cx(mid, cout, 3, hw)
        if memory_efficient:  # only the 1x1 conv's output and the 3x3 conv's output are stored
            head = Cx(head.params, head.flops, mid * hw * hw)
            tail = Cx(tail.params, tail.flops, cout * hw * hw)
        return head + tail


class PreActBottleneckOp(nn.Module):
    """He et al. (2016) residual branch: BN-ReLU-Conv1x1, BN-ReLU-Conv3x3, BN-ReLU-Conv1x1 to 4x.

    The node's width is the 4x output; the inner convs have width/4 channels. Summed with
    its input (pattern `residual`) it is one pre-activation bottleneck unit.
    """

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()
        self.branch = PreActBranch(cin, cout, stride=1, dropout=dropout)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch.first(F.relu(self.branch.norm1(x)))

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        return self.branch.rest(h)

    @property
    def in_conv(self) -> nn.Conv2d:
        return self.branch.conv1

    @staticmethod
    def complexity(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
        return norm_act_cx(cin, hw) + PreActBranch.complexity(cin, cout, hw, stride=1)[0]


class PreActBranch(nn.Module):
    """The convs of a pre-activation bottleneck unit after its first BN-ReLU (stride in the 3x3)."""

    def __init__(self, cin: int, cout: int, *, stride: int, dropout: float) -> None:
        super().__init__()
        mid = cout // 4
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.conv2 = conv3x3(mid, mid, stride)
        self.norm3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.p = dropout

    def first(self, pre: torch.Tensor) -> torch.Tensor:
        """Conv1x1 of the pre-activated input."""
        return dropout(self.conv1(pre), self.p, self.training)

    def rest(self, h: torch.Tensor) -> torch.Tensor:
        """BN-ReLU-Conv3x3 (strided), BN-ReLU-Conv1x1 to the unit's width."""
        h = dropout(self.conv2(F.relu(self.norm2(h))), self.p, self.training)
        return dropout(self.conv3(F.relu(self.norm3(h))), self.p, self.training)

    @staticmethod
    def complexity(cin: int, cout: int, hw: int, stride: int) -> tuple[Cx, int]:
        """Complexity without the first BN-ReLU (norm1 params are counted by the caller)."""
        mid, out_hw = cout // 4, (hw - 1) // stride + 1
        cx = conv_cx(cin, mid, 1, hw) + norm_act_cx(mid, hw) + conv_cx(mid, mid, 3, out_hw)
        return cx + norm_act_cx(mid, out_hw) + conv_cx(mid, cout, 1, out_hw), out_hw


class PostActBasicOp(nn.Module):
    """He et al. (2015) basic residual branch: Conv3x3-BN-ReLU-Conv3x3-BN (post-activation).

    Its input is already activated; pattern `residual-postact` adds the shortcut and the
    ReLU after the sum.
    """

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.norm1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.norm2 = nn.BatchNorm2d(cout)
        self.p = dropout

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(self.conv1(x), self.p, self.training)

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(h))
        return self.norm2(dropout(self.conv2(h), self.p, self.training))

    @property
    def in_conv(self) -> nn.Conv2d:
        return self.conv1

    @staticmethod
    def complexity(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False,
                   stride: int = 1) -> Cx:
        out_hw = (hw - 1) // stride + 1
        cx = conv_cx(cin, cout, 3, out_hw) + norm_act_cx(cout, out_hw) + conv_cx(cout, cout, 3, out_hw)
        return cx + norm_act_cx(cout, out_hw)


class ReluOp(nn.Module):
    """A parameter-free ReLU: the join after a post-activation unit's sum."""

    in_conv = None

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)  # not in place: the summed inputs may be kept by a running sum

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        return h

    @staticmethod
    def complexity(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
        return Cx(acts=cout * hw * hw)


OPS: dict[str, type[nn.Module]] = {
    "conv3x3": ConvOp,
    "bottleneck": BottleneckOp,
    "preact_bottleneck": PreActBottleneckOp,
    "postact_basic": PostActBasicOp,
    "relu": ReluOp,
}


class CifarStem(nn.Sequential):
    """A single 3x3 conv (the paper's CIFAR/SVHN networks)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)

    @staticmethod
    def complexity(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        return conv_cx(cin, cout, 3, hw), hw


class _ChannelsLast(torch.autograd.Function):
    """A channels-last copy whose gradient comes back in the input's NCHW layout.

    A plain `.contiguous(memory_format=...)` would pass a channels-last gradient on to the ops
    before it, whose NCHW backward kernels are slower on it than the copy saves.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class ImageNetStem(nn.Sequential):
    """7x7/2 conv, BN, ReLU, 3x3/2 max pool (DenseNet-121/169/201)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 7, stride=2, padding=3, bias=False)
        self.norm0 = nn.BatchNorm2d(cout)
        self.relu0 = nn.ReLU(inplace=True)
        self.pool0 = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU after the max pool: max commutes with a non-decreasing function, so the values and
        # gradients are those of pool(relu(.)) (a window whose maximum is <= 0 gives 0 and no
        # gradient either way), with the ReLU on a quarter of the positions.
        x = self.norm0(self.conv0(x))  # (B, C, H/2, W/2)
        if x.device.type == "cpu" and not x.is_contiguous(memory_format=torch.channels_last):
            # ATen's CPU max pool is several times faster on channels-last memory than on NCHW
            # (docs/benchmarks.md, "Layout and exact rewrites"); values and gradients are the same.
            return self.relu0(self.pool0(_ChannelsLast.apply(x)).contiguous())  # (B, C, H/4, W/4)
        return self.relu0(self.pool0(x))  # (B, C, H/4, W/4)

    @staticmethod
    def complexity(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        conv_hw = (hw + 2 * 3 - 7) // 2 + 1
        pool_hw = (conv_hw + 2 - 3) // 2 + 1
        cx = conv_cx(cin, cout, 7, conv_hw) + norm_act_cx(cout, conv_hw)
        return cx + Cx(acts=cout * pool_hw * pool_hw), pool_hw


class PostActStem(nn.Sequential):
    """3x3 conv, BN, ReLU (He et al. 2015's CIFAR ResNets)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm0 = nn.BatchNorm2d(cout)
        self.relu0 = nn.ReLU(inplace=True)

    @staticmethod
    def complexity(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        return conv_cx(cin, cout, 3, hw) + norm_act_cx(cout, hw), hw


class PreActEntryStem(nn.Module):
    """3x3 conv to cout/4 channels, then stage 1's first bottleneck unit (projection to cout).

    In He et al. (2016) the first unit of stage 1 widens 16 -> 64 channels through a
    projection shortcut; a `residual` block keeps its width, so that unit lives here.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout // 4, 3, padding=1, bias=False)
        self.unit = PreActStageTransition(cout // 4, cout, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(self.conv0(x))

    @staticmethod
    def complexity(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        cx, hw = conv_cx(cin, cout // 4, 3, hw), hw
        unit, hw = PreActStageTransition.complexity(cout // 4, cout, hw, stride=1)
        return cx + unit, hw


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 (compression), dropout, then 2x2 average pooling.

    Without dropout the pooling runs before the 1x1 conv: both are linear, one over channels and
    one over positions, so the map is the same (up to rounding) for a quarter of the conv's work.
    """

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        if dropout > 0:  # the paper's "dropout after each convolutional layer" (Sec. 4.1)
            self.drop = nn.Dropout(dropout)
        self.pool = nn.AvgPool2d(2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.norm(x))  # (B, C_in, H, W)
        if hasattr(self, "drop"):  # dropout acts on each position of the conv's output: keep the order
            return self.pool(self.drop(self.conv(x)))  # (B, C_out, H/2, W/2)
        return self.conv(self.pool(x))  # (B, C_out, H/2, W/2)

    @staticmethod
    def complexity(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        # The conventional count (conv at full resolution), as papers report; the forward above
        # does a quarter of the conv's multiply-adds when there is no dropout.
        out_hw = hw // 2
        cx = norm_act_cx(cin, hw) + conv_cx(cin, cout, 1, hw)
        return cx + Cx(acts=cout * out_hw * out_hw), out_hw


class PreActStageTransition(nn.Module):
    """First unit of a pre-activation ResNet stage: shared BN-ReLU, strided bottleneck
    branch plus a strided 1x1 projection shortcut (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0, stride: int = 2) -> None:
        super().__init__()
        self.branch = PreActBranch(cin, cout, stride=stride, dropout=dropout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.branch.norm1(x))  # (B, C_in, H, W), read by both paths
        return self.shortcut(pre) + self.branch.rest(self.branch.first(pre))  # (B, C_out, H/s, W/s)

    @staticmethod
    def complexity(cin: int, cout: int, hw: int, stride: int = 2) -> tuple[Cx, int]:
        branch, out_hw = PreActBranch.complexity(cin, cout, hw, stride)
        shortcut = conv_cx(cin, cout, 1, out_hw)
        return norm_act_cx(cin, hw) + branch + shortcut + Cx(acts=cout * out_hw * out_hw), out_hw


class PostActStageTransition(nn.Module):
    """First unit of a post-activation ResNet stage: strided basic branch plus the
    parameter-free shortcut (option A of He et al. 2015: subsample, zero-pad channels), ReLU."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.branch = PostActBasicOp(cin, cout, bn_size=1, dropout=dropout, stride=2)
        self.pad = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x[:, :, ::2, ::2]  # (B, C_in, ceil(H/2), ceil(W/2))
        shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))  # (B, C_out, ...)
        return F.relu(shortcut + self.branch.tail(self.branch.head(x)))

    @staticmethod
    def complexity(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        out_hw = (hw - 1) // 2 + 1
        branch = PostActBasicOp.complexity(cin, cout, 1, hw, stride=2)
        return branch + Cx(acts=2 * cout * out_hw * out_hw), out_hw


TRANSITIONS: dict[str, type[nn.Module]] = {
    "densenet": Transition,
    "preact": PreActStageTransition,
    "postact": PostActStageTransition,
}


class Head(nn.Module):
    """BN-ReLU, global average pooling, linear classifier."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(x))  # (B, C, H, W)
        # A mean, not adaptive_avg_pool2d: its CUDA backward has no deterministic kernel.
        x = x.mean(dim=(2, 3))  # (B, C)
        return self.classifier(x)  # (B, classes)

    @staticmethod
    def complexity(cin: int, classes: int, hw: int) -> Cx:
        linear = Cx(cin * classes + classes, cin * classes, classes)
        return norm_act_cx(cin, hw) + Cx(acts=cin) + linear


class PoolHead(nn.Module):
    """Global average pooling and a linear classifier (post-activation ResNets end activated)."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))  # (B, classes)

    @staticmethod
    def complexity(cin: int, classes: int, hw: int) -> Cx:
        return Cx(cin * classes + classes, cin * classes, cin + classes)


HEADS: dict[str, type[nn.Module]] = {"bn-relu": Head, "pool": PoolHead}
STEMS: dict[str, type[nn.Module]] = {
    "cifar": CifarStem, "imagenet": ImageNetStem, "postact": PostActStem, "preact-entry": PreActEntryStem,
}
