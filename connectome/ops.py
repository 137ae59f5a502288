"""Operations a spec names: layer ops, stems, transitions and the head.

Each op is an nn.Module that can also report its complexity without being built
(`Op.complexity(...)`), so studies reject over-budget candidates before training.
Layer ops split into `head` (recomputed in memory-efficient mode) and `tail`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Cx:
    """Complexity of a piece of network: parameters, multiply-adds, stored activations."""

    params: int = 0
    flops: int = 0
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


class ConvOp(nn.Module):
    """BN-ReLU-Conv3x3, the basic DenseNet layer (names as torchvision's)."""

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
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
        self.conv2 = nn.Conv2d(mid, cout, 3, padding=1, bias=False)
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


OPS: dict[str, type[nn.Module]] = {"conv3x3": ConvOp, "bottleneck": BottleneckOp}


class CifarStem(nn.Sequential):
    """A single 3x3 conv (the paper's CIFAR/SVHN networks)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)

    @staticmethod
    def complexity(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        return conv_cx(cin, cout, 3, hw), hw


class ImageNetStem(nn.Sequential):
    """7x7/2 conv, BN, ReLU, 3x3/2 max pool (DenseNet-121/169/201)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 7, stride=2, padding=3, bias=False)
        self.norm0 = nn.BatchNorm2d(cout)
        self.relu0 = nn.ReLU(inplace=True)
        self.pool0 = nn.MaxPool2d(3, stride=2, padding=1)

    @staticmethod
    def complexity(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        conv_hw = (hw + 2 * 3 - 7) // 2 + 1
        pool_hw = (conv_hw + 2 - 3) // 2 + 1
        cx = conv_cx(cin, cout, 7, conv_hw) + norm_act_cx(cout, conv_hw)
        return cx + Cx(acts=cout * pool_hw * pool_hw), pool_hw


STEMS: dict[str, type[nn.Module]] = {"cifar": CifarStem, "imagenet": ImageNetStem}


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 (compression) then 2x2 average pooling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)

    @staticmethod
    def complexity(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        out_hw = hw // 2
        cx = norm_act_cx(cin, hw) + conv_cx(cin, cout, 1, hw)
        return cx + Cx(acts=cout * out_hw * out_hw), out_hw


class Head(nn.Module):
    """BN-ReLU, global average pooling, linear classifier."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(x))  # (B, C, H, W)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, C)
        return self.classifier(x)  # (B, classes)

    @staticmethod
    def complexity(cin: int, classes: int, hw: int) -> Cx:
        linear = Cx(cin * classes + classes, cin * classes, classes)
        return norm_act_cx(cin, hw) + Cx(acts=cin) + linear
