"""The kinds of each network part by name, and what each costs: params, multiply-adds, activations.

One registry per part (layer ops, stems, transitions, heads). A kind is named here, where its
cost formula is registered; `connectome.ops` registers the nn.Module implementing it under the
same name. Nothing here imports torch, so a study plans (spec, params, MACs, activations) without
it. A new kind (a transformer block, say) is a cost formula here plus a module in `ops.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from connectome.errors import SpecError, unknown_name

F = TypeVar("F", bound=Callable)


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


@dataclass(frozen=True)
class Ports:
    """An op kind's named input and output ports, beside its one default input and output (docs/design.md).

    A named input port aggregates its own in-edges; one left without in-edges reads the default input,
    and a `required` one must have in-edges when the node has no default input. An `own` port
    (input, output) aggregates the op's own output of that name first, then its in-edges.
    """

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    own: tuple[tuple[str, str], ...] = ()


class Kinds(Generic[F]):
    """The kinds of one network part: a cost formula per name, and the module implementing each."""

    def __init__(self, part: str) -> None:
        self.part = part  # as errors name it: "unknown stem 'x'"
        self.costs: dict[str, F] = {}
        self.modules: dict[str, type] = {}  # filled when connectome.ops is imported
        self.layouts: dict[str, str] = {}  # the tensors each kind reads: "maps" or "tokens" (spec.CHANNEL_DIM)
        self.ports: dict[str, Ports] = {}  # named ports of the kinds that have them

    def cost(self, name: str, layout: str = "maps", ports: Ports | None = None) -> Callable[[F], F]:
        """Decorator naming a kind of this part by its cost formula (the layout it reads, its named ports)."""

        def add(formula: F) -> F:
            self.costs[name] = formula
            self.layouts[name] = layout
            if ports is not None:
                self.ports[name] = ports
            return formula

        return add

    def module(self, name: str) -> Callable[[type], type]:
        """Class decorator registering the module that implements kind `name`."""

        def add(cls: type) -> type:
            self.formula(name)  # the name must already have its cost formula: one owner of the names
            self.modules[name] = cls
            return cls

        return add

    def formula(self, name: str) -> F:
        """The cost formula of kind `name`, or a SpecError listing the known kinds."""
        if name not in self.costs:
            raise SpecError(unknown_name(self.part, name, self.costs))
        return self.costs[name]


# (cin, cout, bn_size, hw, memory_efficient=False) -> Cx, at hw x hw maps (a layer op keeps its side).
OP_KINDS: Kinds[Callable[..., Cx]] = Kinds("op")
# (cin, cout, hw) -> (Cx, side of the maps it hands on).
STEM_KINDS: Kinds[Callable[..., tuple[Cx, int]]] = Kinds("stem")
TRANSITION_KINDS: Kinds[Callable[..., tuple[Cx, int]]] = Kinds("transition")
# (cin, classes, hw) -> Cx.
HEAD_KINDS: Kinds[Callable[..., Cx]] = Kinds("head")


def conv_cx(cin: int, cout: int, k: int, hw_out: int) -> Cx:
    """A bias-free k x k conv producing hw_out x hw_out maps."""
    params = cin * cout * k * k
    return Cx(params, params * hw_out * hw_out, cout * hw_out * hw_out)


def norm_act_cx(c: int, hw: int) -> Cx:
    """BN (weight and bias) then an in-place ReLU: one stored map of c channels."""
    return Cx(2 * c, 0, c * hw * hw)


@OP_KINDS.cost("conv3x3")
def conv_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """BN-ReLU-Conv3x3; memory-efficient mode recomputes the BN-ReLU, storing the conv's output only."""
    cx = norm_act_cx(cin, hw) + conv_cx(cin, cout, 3, hw)
    return Cx(cx.params, cx.flops, cout * hw * hw) if memory_efficient else cx


@OP_KINDS.cost("bottleneck")
def bottleneck_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """BN-ReLU-Conv1x1 to bn_size*cout channels, then BN-ReLU-Conv3x3 to cout."""
    mid = bn_size * cout
    head = norm_act_cx(cin, hw) + conv_cx(cin, mid, 1, hw)
    tail = norm_act_cx(mid, hw) + conv_cx(mid, cout, 3, hw)
    if memory_efficient:  # only the 1x1 conv's output and the 3x3 conv's output are stored
        head = Cx(head.params, head.flops, mid * hw * hw)
        tail = Cx(tail.params, tail.flops, cout * hw * hw)
    return head + tail


@OP_KINDS.cost("preact_bottleneck")
def preact_bottleneck_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """A pre-activation bottleneck branch, its first BN-ReLU included."""
    return norm_act_cx(cin, hw) + preact_branch_cx(cin, cout, hw, stride=1)[0]


def preact_branch_cx(cin: int, cout: int, hw: int, stride: int) -> tuple[Cx, int]:
    """Conv1x1, BN-ReLU-Conv3x3 (strided), BN-ReLU-Conv1x1; the first BN-ReLU is the caller's."""
    mid, out_hw = cout // 4, (hw - 1) // stride + 1
    cx = conv_cx(cin, mid, 1, hw) + norm_act_cx(mid, hw) + conv_cx(mid, mid, 3, out_hw)
    return cx + norm_act_cx(mid, out_hw) + conv_cx(mid, cout, 1, out_hw), out_hw


@OP_KINDS.cost("postact_basic")
def postact_basic_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False,
                        stride: int = 1) -> Cx:
    """Conv3x3 (strided)-BN-ReLU-Conv3x3-BN, a post-activation basic branch."""
    out_hw = (hw - 1) // stride + 1
    cx = conv_cx(cin, cout, 3, out_hw) + norm_act_cx(cout, out_hw) + conv_cx(cout, cout, 3, out_hw)
    return cx + norm_act_cx(cout, out_hw)


@OP_KINDS.cost("preact_basic")
def preact_basic_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """A Wide ResNet branch (Zagoruyko & Komodakis 2016), its first BN-ReLU included."""
    return norm_act_cx(cin, hw) + preact_basic_branch_cx(cin, cout, hw, stride=1)[0]


def preact_basic_branch_cx(cin: int, cout: int, hw: int, stride: int) -> tuple[Cx, int]:
    """Conv3x3 (strided), BN-ReLU, Conv3x3; the first BN-ReLU is the caller's."""
    out_hw = (hw - 1) // stride + 1
    cx = conv_cx(cin, cout, 3, out_hw) + norm_act_cx(cout, out_hw) + conv_cx(cout, cout, 3, out_hw)
    return cx, out_hw


@OP_KINDS.cost("conv_bn_relu")
def conv_bn_relu_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """Conv3x3-BN-ReLU (post-activation, FractalNet's layer): the conv's and the BN-ReLU's outputs."""
    return conv_cx(cin, cout, 3, hw) + norm_act_cx(cout, hw)


def conv_relu_cx(cin: int, cout: int, k: int, hw: int) -> Cx:
    """A k x k conv with bias, then a ReLU (no norm): the conv's and the ReLU's outputs."""
    return conv_cx(cin, cout, k, hw) + Cx(cout, 0, cout * hw * hw)


@OP_KINDS.cost("conv_relu")
def conv_relu_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """Conv3x3 with bias, ReLU: a highway layer's H (Srivastava et al. 2015)."""
    return conv_relu_cx(cin, cout, 3, hw)


@OP_KINDS.cost("relu")
def relu_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """A parameter-free ReLU: its output map."""
    return Cx(acts=cout * hw * hw)


@STEM_KINDS.cost("cifar")
def cifar_stem_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """A single 3x3 conv."""
    return conv_cx(cin, cout, 3, hw), hw


@STEM_KINDS.cost("imagenet")
def imagenet_stem_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """7x7/2 conv, BN-ReLU, 3x3/2 max pool."""
    conv_hw = (hw + 2 * 3 - 7) // 2 + 1
    pool_hw = (conv_hw + 2 - 3) // 2 + 1
    cx = conv_cx(cin, cout, 7, conv_hw) + norm_act_cx(cout, conv_hw)
    return cx + Cx(acts=cout * pool_hw * pool_hw), pool_hw


@STEM_KINDS.cost("postact")
def postact_stem_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """3x3 conv, BN-ReLU."""
    return conv_cx(cin, cout, 3, hw) + norm_act_cx(cout, hw), hw


@STEM_KINDS.cost("preact-entry")
def preact_entry_stem_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """3x3 conv to cout/4 channels, then an unstrided pre-activation stage unit to cout."""
    cx = conv_cx(cin, cout // 4, 3, hw)
    unit, hw = preact_transition_cx(cout // 4, cout, hw, stride=1)
    return cx + unit, hw


# Channels of a Wide ResNet's first conv, whatever the widening factor (Zagoruyko & Komodakis 2016).
WIDE_STEM_CHANNELS = 16


@STEM_KINDS.cost("wide-entry")
def wide_entry_stem_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """3x3 conv to 16 channels, then an unstrided wide stage unit to cout."""
    cx = conv_cx(cin, WIDE_STEM_CHANNELS, 3, hw)
    unit, hw = preact_basic_transition_cx(WIDE_STEM_CHANNELS, cout, hw, stride=1)
    return cx + unit, hw


@STEM_KINDS.cost("none")
def no_stem_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """No stem: the first block reads the image (FractalNet)."""
    return Cx(), hw


@TRANSITION_KINDS.cost("densenet")
def densenet_transition_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """BN-ReLU-Conv1x1, 2x2 average pooling."""
    # The conventional count (conv at full resolution), as papers report; ops.Transition pools
    # first when there is no dropout, doing a quarter of the conv's multiply-adds.
    out_hw = hw // 2
    cx = norm_act_cx(cin, hw) + conv_cx(cin, cout, 1, hw)
    return cx + Cx(acts=cout * out_hw * out_hw), out_hw


@TRANSITION_KINDS.cost("preact")
def preact_transition_cx(cin: int, cout: int, hw: int, stride: int = 2) -> tuple[Cx, int]:
    """Shared BN-ReLU, strided bottleneck branch plus a strided 1x1 projection shortcut, their sum."""
    branch, out_hw = preact_branch_cx(cin, cout, hw, stride)
    shortcut = conv_cx(cin, cout, 1, out_hw)
    return norm_act_cx(cin, hw) + branch + shortcut + Cx(acts=cout * out_hw * out_hw), out_hw


@TRANSITION_KINDS.cost("preact-basic")
def preact_basic_transition_cx(cin: int, cout: int, hw: int, stride: int = 2) -> tuple[Cx, int]:
    """Shared BN-ReLU, strided wide branch plus a strided 1x1 projection (none if nothing changes), their sum."""
    branch, out_hw = preact_basic_branch_cx(cin, cout, hw, stride)
    shortcut = Cx() if stride == 1 and cin == cout else conv_cx(cin, cout, 1, out_hw)
    return norm_act_cx(cin, hw) + branch + shortcut + Cx(acts=cout * out_hw * out_hw), out_hw


@TRANSITION_KINDS.cost("postact")
def postact_transition_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """Strided basic branch plus the parameter-free shortcut (the sum and its ReLU stored)."""
    out_hw = (hw - 1) // 2 + 1
    branch = postact_basic_op_cx(cin, cout, 1, hw, stride=2)
    return branch + Cx(acts=2 * cout * out_hw * out_hw), out_hw


@TRANSITION_KINDS.cost("maxpool")
def maxpool_transition_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """2x2 max pooling, stride 2 (FractalNet between blocks); widths change inside the next block."""
    out_hw = hw // 2
    return Cx(acts=cout * out_hw * out_hw), out_hw


# The highway family (Srivastava et al. 2015): each stage opens with a conv + ReLU (the stem's
# reads the image, a transition's the max-pooled stage before); the head maps to 100 channels
# by a 1x1 conv + ReLU (their Caffe models' width, for CIFAR-10 and CIFAR-100 alike).
HIGHWAY_HEAD_CHANNELS = 100


@STEM_KINDS.cost("highway")
def highway_stem_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """Dropout on the image, a 3x3 conv with bias, ReLU."""
    return conv_relu_cx(cin, cout, 3, hw), hw


@TRANSITION_KINDS.cost("highway")
def highway_transition_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """2x2 max pooling, dropout, a 3x3 conv with bias, ReLU."""
    out_hw = hw // 2
    return Cx(acts=cin * out_hw * out_hw) + conv_relu_cx(cin, cout, 3, out_hw), out_hw


@HEAD_KINDS.cost("highway")
def highway_head_cx(cin: int, classes: int, hw: int) -> Cx:
    """A 1x1 conv with bias to 100 channels, ReLU, global average pooling, dropout, linear classifier."""
    mid = HIGHWAY_HEAD_CHANNELS
    linear = Cx(mid * classes + classes, mid * classes, classes)
    return conv_relu_cx(cin, mid, 1, hw) + Cx(acts=mid) + linear


@HEAD_KINDS.cost("max-linear")
def max_linear_head_cx(cin: int, classes: int, hw: int) -> Cx:
    """Global max pooling, linear classifier (FractalNet pools its last block to 1x1)."""
    return Cx(cin * classes + classes, cin * classes, cin + classes)


@HEAD_KINDS.cost("bn-relu")
def bn_relu_head_cx(cin: int, classes: int, hw: int) -> Cx:
    """BN-ReLU, global average pooling, linear classifier."""
    linear = Cx(cin * classes + classes, cin * classes, classes)
    return norm_act_cx(cin, hw) + Cx(acts=cin) + linear


@HEAD_KINDS.cost("pool")
def pool_head_cx(cin: int, classes: int, hw: int) -> Cx:
    """Global average pooling, linear classifier."""
    return Cx(cin * classes + classes, cin * classes, cin + classes)


# The modern convolutional families (docs/design.md, "ConvNeXt, EfficientNet and RDNet"): layer
# norms over channels, depthwise convs, inverted bottlenecks. Multiply-adds count convs and linear
# maps (biases, norms, activations and the squeeze-excitation's scaling are elementwise), as
# torchvision's published figures do.
def biased_conv_cx(cin: int, cout: int, k: int, hw_out: int) -> Cx:
    """A k x k conv with a bias producing hw_out x hw_out maps (1x1: a linear map per position)."""
    return conv_cx(cin, cout, k, hw_out) + Cx(params=cout)


def depthwise_cx(c: int, k: int, hw_out: int, bias: bool) -> Cx:
    """A k x k depthwise conv (one filter per channel), with or without a bias."""
    return Cx(c * k * k + (c if bias else 0), c * k * k * hw_out * hw_out, c * hw_out * hw_out)


def layer_norm_cx(c: int, hw: int) -> Cx:
    """LayerNorm over c channels at every position (weight and bias): its output map."""
    return Cx(2 * c, 0, c * hw * hw)


def make_divisible(v: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding (torchvision's _make_divisible): nearest multiple, never 10% below."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def squeeze_width(cin: int) -> int:
    """Channels of an MBConv's squeeze-and-excitation: a quarter of the unit's input (torchvision)."""
    return max(1, cin // 4)


def mbconv_cx(cin: int, cout: int, expand: int, k: int, hw: int, stride: int) -> tuple[Cx, int]:
    """MBConv: Conv1x1-BN-SiLU expansion (none at ratio 1), depthwise kxk (strided)-BN-SiLU, squeeze-and-
    excitation, Conv1x1-BN projection (Tan & Le 2019; the maps it hands on)."""
    mid, out_hw = make_divisible(cin * expand), (hw - 1) // stride + 1
    cx = Cx() if expand == 1 else conv_cx(cin, mid, 1, hw) + norm_act_cx(mid, hw)
    cx += depthwise_cx(mid, k, out_hw, bias=False) + norm_act_cx(mid, out_hw)
    se = squeeze_width(cin)
    cx += biased_conv_cx(mid, se, 1, 1) + biased_conv_cx(se, mid, 1, 1) + Cx(acts=mid * out_hw * out_hw)
    return cx + conv_cx(mid, cout, 1, out_hw) + Cx(2 * cout, 0, cout * out_hw * out_hw), out_hw


@OP_KINDS.cost("convnext")
def convnext_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """ConvNeXt block (Liu et al. 2022): depthwise 7x7, LayerNorm, Linear to bn_size*cin, GELU, Linear, layer scale."""
    hidden = bn_size * cin
    cx = depthwise_cx(cin, 7, hw, bias=True) + layer_norm_cx(cin, hw)
    cx += biased_conv_cx(cin, hidden, 1, hw) + Cx(acts=hidden * hw * hw) + biased_conv_cx(hidden, cout, 1, hw)
    return cx + Cx(cout, 0, cout * hw * hw)


def rdnet_mixer_cx(cin: int, cout: int, bn_size: int, hw: int) -> Cx:
    """RDNet's feature mixer: depthwise 7x7, LayerNorm, Conv1x1 to the rounded bn_size*cin, GELU, Conv1x1."""
    hidden = rdnet_hidden(cin, bn_size)
    cx = depthwise_cx(cin, 7, hw, bias=True) + layer_norm_cx(cin, hw)
    return cx + biased_conv_cx(cin, hidden, 1, hw) + Cx(acts=hidden * hw * hw) + biased_conv_cx(hidden, cout, 1, hw)


def rdnet_hidden(cin: int, bn_size: int) -> int:
    """The mixer's inner width: bn_size * cin rounded down to a multiple of 8 (Kim et al. 2024; at least 8)."""
    return max(8, int(cin * bn_size / 8) * 8)


@OP_KINDS.cost("rdnet")
def rdnet_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """RDNet's feature-mixer layer, then its layer scale."""
    return rdnet_mixer_cx(cin, cout, bn_size, hw) + Cx(cout, 0, cout * hw * hw)


@OP_KINDS.cost("rdnet_ese")
def rdnet_ese_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
    """RDNet's feature mixer with effective squeeze-excitation (a biased Conv1x1 gate on pooled maps), layer scale."""
    ese = biased_conv_cx(cout, cout, 1, 1) + Cx(acts=cout * hw * hw)
    return rdnet_mixer_cx(cin, cout, bn_size, hw) + ese + Cx(cout, 0, cout * hw * hw)


def _mbconv_op(kernel: int) -> Callable[..., Cx]:
    def cost(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False) -> Cx:
        return mbconv_cx(cin, cout, bn_size, kernel, hw, stride=1)[0]

    cost.__doc__ = f"An unstrided MBConv unit with a {kernel}x{kernel} depthwise conv, expansion bn_size."
    return cost


# Stage units of EfficientNet-B0 (the first of each stage): (depthwise kernel, stride); expansion 6.
MBCONV_EXPAND = 6
MBCONV_TRANSITIONS = {f"mbconv{k}-s{s}": (k, s) for k in (3, 5) for s in (1, 2)}
for _k in (3, 5):
    OP_KINDS.cost(f"mbconv{_k}")(_mbconv_op(_k))


def _mbconv_transition(kernel: int, stride: int) -> Callable[..., tuple[Cx, int]]:
    def cost(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        return mbconv_cx(cin, cout, MBCONV_EXPAND, kernel, hw, stride)

    cost.__doc__ = f"A stage's first MBConv: expansion 6, {kernel}x{kernel} depthwise, stride {stride}, no shortcut."
    return cost


for _name, (_k, _s) in MBCONV_TRANSITIONS.items():
    TRANSITION_KINDS.cost(_name)(_mbconv_transition(_k, _s))


def _patch_stem(patch: int) -> Callable[..., tuple[Cx, int]]:
    def cost(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        out_hw = hw // patch
        return biased_conv_cx(cin, cout, patch, out_hw) + layer_norm_cx(cout, out_hw), out_hw

    cost.__doc__ = f"A {patch}x{patch} patchify conv (stride {patch}, bias) and a LayerNorm (ConvNeXt, RDNet)."
    return cost


STEM_KINDS.cost("patch4")(_patch_stem(4))
STEM_KINDS.cost("patch2")(_patch_stem(2))


def _efficientnet_stem(stride: int) -> Callable[..., tuple[Cx, int]]:
    def cost(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
        out_hw = (hw - 1) // stride + 1
        cx = conv_cx(cin, 2 * cout, 3, out_hw) + norm_act_cx(2 * cout, out_hw)
        unit, out_hw = mbconv_cx(2 * cout, cout, 1, 3, out_hw, stride=1)
        return cx + unit, out_hw

    cost.__doc__ = (f"EfficientNet's 3x3 conv (stride {stride}) to 2*cout, BN-SiLU, then stage 1's MBConv "
                    "(expansion 1, 3x3) to cout.")
    return cost


STEM_KINDS.cost("efficientnet")(_efficientnet_stem(2))
STEM_KINDS.cost("efficientnet-s1")(_efficientnet_stem(1))


@TRANSITION_KINDS.cost("patch-merge")
def patch_merge_transition_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """LayerNorm, then a 2x2 conv of stride 2 with a bias (ConvNeXt's downsampling; RDNet's)."""
    out_hw = hw // 2
    return layer_norm_cx(cin, hw) + biased_conv_cx(cin, cout, 2, out_hw), out_hw


@TRANSITION_KINDS.cost("ln-conv1x1")
def ln_conv1x1_transition_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """LayerNorm, then a Conv1x1 with a bias (RDNet's transition where a stage keeps the resolution)."""
    return layer_norm_cx(cin, hw) + biased_conv_cx(cin, cout, 1, hw), hw


@HEAD_KINDS.cost("pool-ln")
def pool_ln_head_cx(cin: int, classes: int, hw: int) -> Cx:
    """Global average pooling, LayerNorm, linear classifier (ConvNeXt, RDNet)."""
    return Cx(2 * cin + cin * classes + classes, cin * classes, 2 * cin + classes)


# EfficientNet's head widens to this many times its input (1280 = 4 x 320 in B0).
EFFICIENTNET_HEAD_EXPANSION = 4


@HEAD_KINDS.cost("efficientnet")
def efficientnet_head_cx(cin: int, classes: int, hw: int) -> Cx:
    """Conv1x1 to 4*cin, BN-SiLU, global average pooling, dropout, linear classifier."""
    wide = EFFICIENTNET_HEAD_EXPANSION * cin
    cx = conv_cx(cin, wide, 1, hw) + norm_act_cx(wide, hw)
    return cx + Cx(wide * classes + classes, wide * classes, wide + classes)


# The decoder family (docs/design.md, "The decoder family"): tensors are (batch, tokens, width) and
# every count is per token (hw = 1). Norms and rotary rotations are elementwise: not multiply-adds.
# Attention's streams q, k, v (each RMS-normed and projected), the residual r added to its output
# (MUDDFormer), its projected values as output `v` and the input `values` that mixes its own values
# with earlier ones (value residual learning); docs/design.md, "Ports".
ATTENTION_PORTS = Ports(inputs=("q", "k", "v", "r", "values"), outputs=("v",), required=("q", "k", "v"),
                        own=(("values", "v"),))


def attention_norms(ports: tuple[str, ...]) -> int:
    """RMSNorms of an attention node: one per named q/k/v port, one more if any of them reads the default input."""
    named = [p for p in ("q", "k", "v") if p in ports]
    return len(named) + (len(named) < 3)


@OP_KINDS.cost("attention", layout="tokens", ports=ATTENTION_PORTS)
def attention_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False, *,
                    heads: int, context: int, mlp_hidden: int, sublayers: int, ports: tuple[str, ...] = ()) -> Cx:
    """RMSNorm(s), q/k/v projections, causal attention over the context, output projection (no biases).

    A query at position t reads t keys, so over a full context each token reads (context + 1) / 2 keys
    on average, a multiply-add per width element for the scores and another for the weighted values.
    """
    projections = Cx(cin * 3 * cout + cout * cout, cin * 3 * cout + cout * cout)
    scores = Cx(flops=(context + 1) * cout)  # 2 * (context + 1) / 2 * cout
    norms = attention_norms(ports)
    return Cx(norms * cin) + projections + scores + Cx(acts=norms * cin + 5 * cout)  # normed inputs, q, k, v, mix, out


@OP_KINDS.cost("swiglu", layout="tokens")
def swiglu_op_cx(cin: int, cout: int, bn_size: int, hw: int, memory_efficient: bool = False, *,
                 heads: int, context: int, mlp_hidden: int, sublayers: int) -> Cx:
    """RMSNorm, gate and up projections to mlp_hidden, SiLU(gate) * up, down projection (no biases)."""
    weights = 2 * cin * mlp_hidden + mlp_hidden * cout
    return Cx(cin + weights, weights, cin + 3 * mlp_hidden + cout)


@STEM_KINDS.cost("tokens", layout="tokens")
def token_stem_cx(cin: int, cout: int, hw: int) -> tuple[Cx, int]:
    """A token embedding: `cin` (the vocabulary) rows of `cout`; a lookup, no multiply-adds."""
    return Cx(cin * cout, 0, cout), hw


@HEAD_KINDS.cost("lm", layout="tokens")
def lm_head_cx(cin: int, classes: int, hw: int) -> Cx:
    """Final RMSNorm and an LM head of its own (no bias) over `classes` (the vocabulary)."""
    return Cx(cin + cin * classes, cin * classes, cin + classes)


@HEAD_KINDS.cost("lm-tied", layout="tokens")
def tied_lm_head_cx(cin: int, classes: int, hw: int) -> Cx:
    """Final RMSNorm and an LM head that reuses the token embedding's matrix (its parameters counted there)."""
    return Cx(cin, cin * classes, cin + classes)
