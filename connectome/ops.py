"""Operations a spec names: the nn.Modules of layer ops, stems, transitions and heads.

Stems, transitions and heads take the network's dropout; among stems only the Wide ResNet's (which
holds stage 1's first unit) and the highway family's apply it, and among heads only the highway
family's: the others keep their first conv and classifier free of it, as the papers' networks do.

Each module is registered under the name of its kind in `connectome.costs`, which owns the
names and each kind's cost formula (so planning needs no torch). Layer ops split into `head`
(recomputed in memory-efficient mode) and `tail`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from connectome.costs import (EFFICIENTNET_HEAD_EXPANSION, HEAD_KINDS, HIGHWAY_HEAD_CHANNELS, MBCONV_EXPAND,
                              MBCONV_TRANSITIONS, OP_KINDS, STEM_KINDS, TRANSITION_KINDS, WIDE_STEM_CHANNELS,
                              make_divisible, rdnet_hidden, squeeze_width)


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


@OP_KINDS.module("conv3x3")
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


@OP_KINDS.module("bottleneck")
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


@OP_KINDS.module("preact_bottleneck")
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


@OP_KINDS.module("postact_basic")
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


@OP_KINDS.module("preact_basic")
class PreActBasicOp(nn.Module):
    """Zagoruyko & Komodakis (2016) wide branch: BN-ReLU-Conv3x3, BN-ReLU, dropout, Conv3x3.

    Summed with its input (pattern `residual`) it is one pre-activation basic unit; the width
    is the stage's (16k, 32k, 64k for widening factor k).
    """

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()
        self.branch = PreActBasicBranch(cin, cout, stride=1, dropout=dropout)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch.conv1(F.relu(self.branch.norm1(x)))

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        return self.branch.rest(h)

    @property
    def in_conv(self) -> nn.Conv2d:
        return self.branch.conv1


class PreActBasicBranch(nn.Module):
    """The convs of a wide unit after its first BN-ReLU: Conv3x3 (strided), BN-ReLU, dropout, Conv3x3."""

    def __init__(self, cin: int, cout: int, *, stride: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, cout, stride)
        self.norm2 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.p = dropout  # between the convs only, as in Zagoruyko & Komodakis (2016)

    def rest(self, h: torch.Tensor) -> torch.Tensor:
        """BN-ReLU, dropout, Conv3x3 of the first conv's output."""
        return self.conv2(dropout(F.relu(self.norm2(h)), self.p, self.training))


@OP_KINDS.module("conv_bn_relu")
class ConvBnReluOp(nn.Module):
    """Conv3x3-BN-ReLU, FractalNet's layer (Larsson et al. 2016); dropout after the conv."""

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout)
        self.norm1 = nn.BatchNorm2d(cout)
        self.p = dropout

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(self.conv1(x), self.p, self.training)

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm1(h))

    @property
    def in_conv(self) -> nn.Conv2d:
        return self.conv1


def conv_relu(cin: int, cout: int, k: int) -> nn.Conv2d:
    """A zero-padded k x k conv with a bias, started at zero (the highway family's convs)."""
    conv = CentreTapConv2d(cin, cout, k, padding=k // 2, bias=True)
    nn.init.zeros_(conv.bias)
    return conv


@OP_KINDS.module("conv_relu")
class ConvReluOp(nn.Module):
    """Conv3x3 with bias, ReLU: H of a highway layer (Srivastava et al. 2015), which has no norm.

    The network's dropout is not applied here: the highway family drops at each stage's input and
    before the classifier (stem, transitions, head), as the authors' networks do.
    """

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = conv_relu(cin, cout, 3)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h)

    @property
    def in_conv(self) -> nn.Conv2d:
        return self.conv1


@OP_KINDS.module("relu")
class ReluOp(nn.Module):
    """A parameter-free ReLU: the join after a post-activation unit's sum."""

    in_conv = None

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)  # not in place: the summed inputs may be kept by a running sum

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        return h


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, H, W) maps, eps 1e-6 (torchvision's and timm's ConvNeXt/RDNet)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


def layer_scale(channels: int) -> nn.Parameter:
    """A learned per-channel scale of a branch, initialised to 1e-6 (Touvron et al. 2021; ConvNeXt, RDNet)."""
    return nn.Parameter(torch.full((channels, 1, 1), 1e-6))


@OP_KINDS.module("convnext")
class ConvNeXtOp(nn.Module):
    """ConvNeXt block (Liu et al. 2022): depthwise 7x7, LayerNorm, Linear to bn_size*cin, GELU, Linear, layer scale.

    Summed with its input (pattern `residual`) it is one ConvNeXt block; its stochastic depth is the
    node's `drop` (the wiring language's). Names as torchvision's `CNBlock` after `block.`.
    """

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(cin, cin, 7, padding=3, groups=cin)
        self.norm = nn.LayerNorm(cin, eps=1e-6)
        self.fc1 = nn.Linear(cin, bn_size * cin)
        self.fc2 = nn.Linear(bn_size * cin, cout)
        self.layer_scale = layer_scale(cout)
        self.p = dropout

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_dw(x)  # (B, C_in, H, W)

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(h.permute(0, 2, 3, 1))  # (B, H, W, C_in): the MLP runs channels-last
        h = self.fc2(F.gelu(self.fc1(h))).permute(0, 3, 1, 2)  # (B, C_out, H, W)
        return dropout(self.layer_scale * h, self.p, self.training)

    @property
    def in_conv(self) -> nn.Linear:
        """The first map that mixes the input's channels (the depthwise conv before it keeps them apart)."""
        return self.fc1


class EffectiveSE(nn.Module):
    """Effective squeeze-excitation (Lee & Park 2020): x * hardsigmoid(Conv1x1(mean over positions))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.hardsigmoid(self.fc(x.mean((2, 3), keepdim=True)))


@OP_KINDS.module("rdnet")
class RDNetOp(nn.Module):
    """RDNet's feature mixer (Kim et al. 2024): depthwise 7x7, LayerNorm, Conv1x1 to bn_size*cin (rounded down
    to a multiple of 8), GELU, Conv1x1 to the growth rate, then layer scale. Names as timm's `layers.layers`."""

    ese = False

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
        super().__init__()
        hidden = rdnet_hidden(cin, bn_size)
        parts = [nn.Conv2d(cin, cin, 7, padding=3, groups=cin), LayerNorm2d(cin), nn.Conv2d(cin, hidden, 1),
                 nn.GELU(), nn.Conv2d(hidden, cout, 1)]
        self.layers = nn.Sequential(*parts, *([EffectiveSE(cout)] if self.ese else []))
        self.layer_scale = layer_scale(cout)
        self.p = dropout

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[0](x)  # (B, C_in, H, W)

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[1:]:
            h = layer(h)
        return dropout(self.layer_scale * h, self.p, self.training)  # (B, C_out, H, W)

    @property
    def in_conv(self) -> nn.Conv2d:
        """The Conv1x1 that first mixes the input's channels (the depthwise conv before it keeps them apart)."""
        return self.layers[2]


@OP_KINDS.module("rdnet_ese")
class RDNetESEOp(RDNetOp):
    """RDNet's feature mixer with effective squeeze-excitation after the last Conv1x1 (its later stages)."""

    ese = True


def conv_norm_act(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (bias-free, "same" padding)-BN(eps 1e-5)-SiLU, named as torchvision's Conv2dNormActivation."""
    layers = [CentreTapConv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.SiLU(inplace=True)] if act else []))


class SqueezeExcitation(nn.Module):
    """x * sigmoid(fc2(SiLU(fc1(mean over positions)))), as torchvision's (Hu et al. 2018)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(x.mean((2, 3), keepdim=True)))))


class MBConv(nn.Module):
    """MBConv (Sandler et al. 2018; Tan & Le 2019): Conv1x1-BN-SiLU expansion (none at ratio 1), depthwise
    kxk-BN-SiLU (strided), squeeze-excitation, Conv1x1-BN projection; no shortcut (a pattern adds it).
    Names as torchvision's `MBConv.block`."""

    def __init__(self, cin: int, cout: int, *, expand: int, kernel: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        mid = make_divisible(cin * expand)
        expansion = [conv_norm_act(cin, mid)] if expand != 1 else []
        self.block = nn.Sequential(*expansion, conv_norm_act(mid, mid, kernel, stride, groups=mid),
                                   SqueezeExcitation(mid, squeeze_width(cin)), conv_norm_act(mid, cout, act=False))
        self.p = dropout

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.block[0](x)  # (B, C_mid, H, W), or the depthwise conv's output at ratio 1

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.block[1:]:
            h = layer(h)
        return dropout(h, self.p, self.training)  # (B, C_out, H/s, W/s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x))

    @property
    def in_conv(self) -> nn.Conv2d:
        return self.block[0][0]


def _mbconv_op(kernel: int) -> type[nn.Module]:
    class MBConvOp(MBConv):
        __doc__ = f"An unstrided MBConv unit, {kernel}x{kernel} depthwise, expansion bn_size (EfficientNet: 6)."

        def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float) -> None:
            super().__init__(cin, cout, expand=bn_size, kernel=kernel, dropout=dropout)

    MBConvOp.__name__ = MBConvOp.__qualname__ = f"MBConv{kernel}Op"
    return MBConvOp


for _k in (3, 5):
    OP_KINDS.module(f"mbconv{_k}")(_mbconv_op(_k))


def rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary positions (Su et al. 2021) on (B, heads, T, d): pairs (i, i + d/2) rotate by t * base^(-2i/d)."""
    t, d = x.shape[-2], x.shape[-1]
    inv_freq = base ** -(torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)  # (d/2,)
    angles = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * inv_freq  # (T, d/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1)  # (B, heads, T, d)


def small_normal_(linear: nn.Linear, std: float = 0.02) -> nn.Linear:
    """GPT-2's initialisation of a projection: N(0, std^2)."""
    nn.init.normal_(linear.weight, std=std)
    return linear


class SequenceOp(nn.Module):
    """A decoder sublayer: RMSNorm then a map of (B, T, cin) to (B, T, cout); all of it is the `head`.

    Output projections start at std 0.02 / sqrt(sublayers) (GPT-2: one residual addition per
    sublayer), so a deep stream starts near the embedding.
    """

    def __init__(self, cin: int, dropout: float, sublayers: int) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(cin, eps=1e-6)
        self.p = dropout
        self.out_std = 0.02 / sublayers**0.5

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(self.mix(self.norm(x)), self.p, self.training)

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        return h


@OP_KINDS.module("attention")
class AttentionOp(SequenceOp):
    """RMSNorm, causal multi-head self-attention with rotary positions (flash kernels via SDPA), projection."""

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float, heads: int, context: int,
                 mlp_hidden: int, sublayers: int, ports: tuple[str, ...] = ()) -> None:
        super().__init__(cin, dropout, sublayers)
        self.heads = heads
        self.qkv = small_normal_(nn.Linear(cin, 3 * cout, bias=False))
        self.proj = small_normal_(nn.Linear(cout, cout, bias=False), self.out_std)
        # MUDDFormer's separate q/k/v streams each have their own RMSNorm (its official code's `sepln`).
        self.port_norms = nn.ModuleDict({p: nn.RMSNorm(cin, eps=1e-6) for p in ("q", "k", "v") if p in ports})
        if len(self.port_norms) == 3:
            self.norm = None  # no stream reads the default input

    @property
    def in_conv(self) -> nn.Linear:
        """The projection that reads the aggregated input (weights (out, in), as source_usage slices them)."""
        return self.qkv

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, heads, T, d) each
        y = F.scaled_dot_product_attention(rotary(q), rotary(k), v, is_causal=True)  # (B, heads, T, d)
        return self.proj(y.transpose(1, 2).reshape(b, t, -1))  # (B, T, cout)

    def forward_ports(self, streams: dict[str, torch.Tensor], late: dict) -> tuple[torch.Tensor, dict]:
        """Named ports: q, k, v streams (else the default input ""), residual r added to the output, and
        `values` = late["values"](own values): the own values mixed with earlier ones. Returns the output
        and the named output v (this node's projected values, (B, T, cout))."""
        normed = {p: self.port_norms[p](streams[p]) if p in self.port_norms else None for p in ("q", "k", "v")}
        if any(x is None for x in normed.values()):
            shared = self.norm(streams[""])
            normed = {p: shared if x is None else x for p, x in normed.items()}
        b, t, _ = normed["q"].shape
        wq, wk, wv = self.qkv.weight.chunk(3)
        split = lambda y: y.view(b, t, self.heads, -1).transpose(1, 2)  # noqa: E731  (B, heads, T, d)
        values = F.linear(normed["v"], wv)  # (B, T, cout)
        mixed = late["values"](values) if "values" in late else values
        q, k = split(F.linear(normed["q"], wq)), split(F.linear(normed["k"], wk))
        y = F.scaled_dot_product_attention(rotary(q), rotary(k), split(mixed), is_causal=True)
        out = dropout(self.proj(y.transpose(1, 2).reshape(b, t, -1)), self.p, self.training)  # (B, T, cout)
        return (out + streams["r"] if "r" in streams else out), {"v": values}


@OP_KINDS.module("swiglu")
class SwiGLUOp(SequenceOp):
    """RMSNorm, SwiGLU MLP (Shazeer 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, cin: int, cout: int, *, bn_size: int, dropout: float, heads: int, context: int,
                 mlp_hidden: int, sublayers: int) -> None:
        super().__init__(cin, dropout, sublayers)
        self.gate = small_normal_(nn.Linear(cin, mlp_hidden, bias=False))
        self.up = small_normal_(nn.Linear(cin, mlp_hidden, bias=False))
        self.down = small_normal_(nn.Linear(mlp_hidden, cout, bias=False), self.out_std)

    @property
    def in_conv(self) -> nn.Linear:
        return self.gate

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))  # (B, T, cout)


# Each part's modules by kind name, as the decorators above registered them.
OPS: dict[str, type[nn.Module]] = OP_KINDS.modules


@STEM_KINDS.module("cifar")
class CifarStem(nn.Sequential):
    """A single 3x3 conv (the paper's CIFAR/SVHN networks)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)


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


@STEM_KINDS.module("imagenet")
class ImageNetStem(nn.Sequential):
    """7x7/2 conv, BN, ReLU, 3x3/2 max pool (DenseNet-121/169/201)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
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


@STEM_KINDS.module("postact")
class PostActStem(nn.Sequential):
    """3x3 conv, BN, ReLU (He et al. 2015's CIFAR ResNets)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm0 = nn.BatchNorm2d(cout)
        self.relu0 = nn.ReLU(inplace=True)


@STEM_KINDS.module("preact-entry")
class PreActEntryStem(nn.Module):
    """3x3 conv to cout/4 channels, then stage 1's first bottleneck unit (projection to cout).

    In He et al. (2016) the first unit of stage 1 widens 16 -> 64 channels through a
    projection shortcut; a `residual` block keeps its width, so that unit lives here.
    """

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout // 4, 3, padding=1, bias=False)
        self.unit = PreActStageTransition(cout // 4, cout, stride=1)  # no dropout here, as before dropout reached stems

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(self.conv0(x))


@STEM_KINDS.module("wide-entry")
class WideEntryStem(nn.Module):
    """3x3 conv to 16 channels, then stage 1's first wide unit (16 -> cout, projection unless equal)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, WIDE_STEM_CHANNELS, 3, padding=1, bias=False)
        self.unit = PreActBasicStageTransition(WIDE_STEM_CHANNELS, cout, dropout=dropout, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(self.conv0(x))


@STEM_KINDS.module("none")
class NoStem(nn.Identity):
    """No stem: the first block reads the image (FractalNet)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()


@TRANSITION_KINDS.module("densenet")
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


@TRANSITION_KINDS.module("preact")
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


@TRANSITION_KINDS.module("preact-basic")
class PreActBasicStageTransition(nn.Module):
    """First unit of a Wide ResNet stage: shared BN-ReLU, strided wide branch plus a strided 1x1
    projection of the activated input; where width and size stay, the shortcut is the raw input."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0, stride: int = 2) -> None:
        super().__init__()
        self.branch = PreActBasicBranch(cin, cout, stride=stride, dropout=dropout)
        self.shortcut = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.branch.norm1(x))  # (B, C_in, H, W), read by both paths
        shortcut = x if self.shortcut is None else self.shortcut(pre)  # (B, C_out, H/s, W/s)
        return shortcut + self.branch.rest(self.branch.conv1(pre))


@TRANSITION_KINDS.module("postact")
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


@TRANSITION_KINDS.module("maxpool")
class MaxPoolTransition(nn.MaxPool2d):
    """2x2 max pooling, stride 2 (FractalNet between blocks)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__(2, stride=2)


@STEM_KINDS.module("highway")
class HighwayStem(nn.Module):
    """Dropout on the image, a 3x3 conv with bias, ReLU (the highway family's first layer)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv0 = conv_relu(cin, cout, 3)
        self.p = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv0(dropout(x, self.p, self.training)))  # (B, C0, H, W)


@TRANSITION_KINDS.module("highway")
class HighwayTransition(nn.Module):
    """2x2 max pooling, dropout, a 3x3 conv with bias to the next stage's width, ReLU."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = conv_relu(cin, cout, 3)
        self.p = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = dropout(F.max_pool2d(x, 2), self.p, self.training)  # (B, C_in, H/2, W/2)
        return F.relu(self.conv(x))  # (B, C_out, H/2, W/2)


def _mbconv_transition(kernel: int, stride: int) -> type[nn.Module]:
    class MBConvTransition(MBConv):
        __doc__ = f"A stage's first MBConv (EfficientNet): expansion 6, {kernel}x{kernel} depthwise, stride {stride}."

        def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
            super().__init__(cin, cout, expand=MBCONV_EXPAND, kernel=kernel, stride=stride)

    MBConvTransition.__name__ = MBConvTransition.__qualname__ = f"MBConv{kernel}S{stride}Transition"
    return MBConvTransition


for _name, (_k, _s) in MBCONV_TRANSITIONS.items():
    TRANSITION_KINDS.module(_name)(_mbconv_transition(_k, _s))


@TRANSITION_KINDS.module("patch-merge")
class PatchMerge(nn.Module):
    """LayerNorm, then a 2x2 conv of stride 2 with a bias (ConvNeXt's downsampling layer; RDNet's)."""

    stride = 2

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = LayerNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, self.stride, stride=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))  # (B, C_out, H/s, W/s)


@TRANSITION_KINDS.module("ln-conv1x1")
class LayerNormConv1x1(PatchMerge):
    """LayerNorm, then a Conv1x1 with a bias (RDNet's transition where a stage keeps the resolution)."""

    stride = 1


TRANSITIONS: dict[str, type[nn.Module]] = TRANSITION_KINDS.modules


class PatchStem(nn.Module):
    """A patchify conv (kernel = stride = patch, bias) and a LayerNorm (ConvNeXt, RDNet)."""

    patch = 4

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, self.patch, stride=self.patch)
        self.norm = LayerNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))  # (B, C, H/patch, W/patch)


STEM_KINDS.module("patch4")(PatchStem)


@STEM_KINDS.module("patch2")
class SmallPatchStem(PatchStem):
    """A 2x2 patchify conv and a LayerNorm: the ConvNeXt stem for small images."""

    patch = 2


@STEM_KINDS.module("efficientnet")
class EfficientNetStem(nn.Module):
    """3x3 conv of stride 2 to 2*cout, BN-SiLU, then stage 1's MBConv (expansion 1, 3x3) to cout (EfficientNet)."""

    stride = 2

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = conv_norm_act(cin, 2 * cout, 3, self.stride)
        self.unit = MBConv(2 * cout, cout, expand=1, kernel=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(self.conv(x))  # (B, C, H/s, W/s)


@STEM_KINDS.module("efficientnet-s1")
class SmallEfficientNetStem(EfficientNetStem):
    """EfficientNet's stem with an unstrided first conv, for small images."""

    stride = 1


@STEM_KINDS.module("tokens")
class TokenStem(nn.Module):
    """A token embedding: (B, T) integer ids -> (B, T, width), initialised N(0, 0.02^2); the network's
    dropout on it (GPT-2's embedding dropout; 0 by default)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cin, cout)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.embedding(x))  # (B, T, width)


@HEAD_KINDS.module("bn-relu")
class Head(nn.Module):
    """BN-ReLU, global average pooling, linear classifier."""

    def __init__(self, cin: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(x))  # (B, C, H, W)
        # A mean, not adaptive_avg_pool2d: its CUDA backward has no deterministic kernel.
        x = x.mean(dim=(2, 3))  # (B, C)
        return self.classifier(x)  # (B, classes)


@HEAD_KINDS.module("pool")
class PoolHead(nn.Module):
    """Global average pooling and a linear classifier (post-activation ResNets end activated)."""

    def __init__(self, cin: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))  # (B, classes)


@HEAD_KINDS.module("max-linear")
class MaxLinearHead(nn.Module):
    """Global max pooling and a linear classifier (FractalNet ends with a max pool to 1x1 and an FC)."""

    def __init__(self, cin: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.amax(dim=(2, 3)))  # (B, classes)


@HEAD_KINDS.module("highway")
class HighwayHead(nn.Module):
    """A 1x1 conv with bias to 100 channels, ReLU, global average pooling, dropout, linear classifier."""

    def __init__(self, cin: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = conv_relu(cin, HIGHWAY_HEAD_CHANNELS, 1)
        self.classifier = nn.Linear(HIGHWAY_HEAD_CHANNELS, classes)
        self.p = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x)).mean(dim=(2, 3))  # (B, 100)
        return self.classifier(dropout(x, self.p, self.training))  # (B, classes)


@HEAD_KINDS.module("pool-ln")
class PoolNormHead(nn.Module):
    """Global average pooling, LayerNorm, linear classifier (ConvNeXt, RDNet)."""

    def __init__(self, cin: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cin, eps=1e-6)
        self.classifier = nn.Linear(cin, classes)
        self.p = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.mean(dim=(2, 3)))  # (B, C)
        return self.classifier(dropout(x, self.p, self.training))  # (B, classes)


EFFICIENTNET_B0_HEAD_DROPOUT = 0.2


@HEAD_KINDS.module("efficientnet")
class EfficientNetHead(nn.Module):
    """Conv1x1 to 4*cin, BN-SiLU, global average pooling, dropout (`dropout` where set, else B0's 0.2), linear."""

    def __init__(self, cin: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        wide = EFFICIENTNET_HEAD_EXPANSION * cin
        self.conv = conv_norm_act(cin, wide)
        self.drop = nn.Dropout(dropout or EFFICIENTNET_B0_HEAD_DROPOUT)
        self.classifier = nn.Linear(wide, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.conv(x).mean(dim=(2, 3))))  # (B, classes)


@HEAD_KINDS.module("lm")
class LMHead(nn.Module):
    """Final RMSNorm and a bias-free linear map to the vocabulary's logits."""

    def __init__(self, cin: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(cin, eps=1e-6)
        self.lm_head = small_normal_(nn.Linear(cin, classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(x))  # (B, T, vocab)


@HEAD_KINDS.module("lm-tied")
class TiedLMHead(nn.Module):
    """Final RMSNorm and logits x E^T with the token embedding E (Press & Wolf 2017); `tie` hands E over."""

    def __init__(self, cin: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(cin, eps=1e-6)
        self.embedding: list[nn.Embedding] = []  # a list: the stem owns the parameter, not this module

    def tie(self, stem: nn.Module) -> None:
        self.embedding = [stem.embedding]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(x), self.embedding[0].weight)  # (B, T, vocab)


HEADS: dict[str, type[nn.Module]] = HEAD_KINDS.modules
STEMS: dict[str, type[nn.Module]] = STEM_KINDS.modules
