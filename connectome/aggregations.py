"""The wiring language's aggregation kinds: how a node combines its in-edges (no torch).

A kind is declared here with `@register_aggregation(name, ...)` on its cost formula: its width
rule (concatenate, or inputs of one width), its options (node attributes, validated and filled
with defaults when a spec is frozen), its learned parameters and multiply-adds, how a dropped
input is treated, and whether memory-efficient mode supports it. `connectome.joins` registers
the nn.Module that implements it under the same name. docs/design.md, "The wiring language",
states every kind's formula and the choices the papers leave open.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from connectome.costs import Cx, conv_cx
from connectome.errors import SpecError, unknown_name

# (n_inputs, width of each input, hw, options) -> what the kind adds beyond its stored aggregate.
CostFormula = Callable[[int, int, int, dict], Cx]


@dataclass(frozen=True)
class Option:
    """A node attribute that parametrises a kind: its default and the values it may take."""

    default: Any
    allowed: tuple = ()  # empty: any real number

    def check(self, value: Any, where: str) -> Any:
        """The validated value (numbers as float), or a SpecError naming the allowed values."""
        if self.allowed:
            if value not in self.allowed or isinstance(value, bool):
                raise SpecError(f"{where} must be one of {', '.join(map(str, self.allowed))}, got {value!r}")
            return self.allowed[self.allowed.index(value)]  # 3.0 from a file is stored as 3
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where} must be a number, got {value!r}")
        return float(value)


@dataclass(frozen=True)
class Aggregation:
    """One aggregation kind: width rule, options, cost and drop rule (its module lives in connectome.joins)."""

    name: str
    cost: CostFormula
    concat: bool = False  # input width = sum of the reads; otherwise every read must have one width
    verb: str = "combines"  # as the unequal-widths error says it: "node 3 sums inputs of unequal widths"
    arity: int | None = None  # exact number of in-edges (None: any)
    options: dict[str, Option] = field(default_factory=dict)
    # A dropped in-edge leaves the mean of the kept inputs (FractalNet); otherwise it reads zeros in
    # training and is scaled by its survival probability in evaluation (Huang et al. 2016).
    renormalise: bool = False
    memory_efficient: bool = True  # memory-efficient mode may recompute it
    single_is_identity: bool = True  # with one input it passes the input on unchanged
    dynamic: bool = False  # weights its inputs per token: needs at least two (a SpecError names the node)
    carried: bool = False  # one in-edge is the carry input x (edge attribute carry; the lowest source if unmarked)
    # A width rule of its own: (reads, options) -> the aggregate's width, or ValueError naming the problem
    # (multi-stream kinds read and write n streams side by side); None: concat or equal widths.
    width_rule: Callable[[list[int], dict], int] | None = None
    # Multi-stream kinds: the option giving the stream count of the state their first in-edge carries
    # (a lesion of one stream zeroes that stream's channels there); "": the kind reads no stream state.
    stream_option: str = ""

    def input_width(self, reads: list[int], options: dict | None = None) -> int:
        """Channels of the aggregate from the channels of the in-edges (and the kind's options)."""
        if self.width_rule is not None:
            return self.width_rule(reads, options or {})
        return sum(reads) if self.concat else reads[0]

    def resolve_options(self, data: dict, where: str) -> tuple[tuple[str, Any], ...]:
        """The kind's options from a node's attributes, validated, defaults filled, sorted by name."""
        return tuple((key, opt.check(data.get(key, opt.default), f"{where} {key}"))
                     for key, opt in sorted(self.options.items()))


AGGREGATIONS: dict[str, Aggregation] = {}


def register_aggregation(name: str, **traits: Any) -> Callable[[CostFormula], CostFormula]:
    """Decorator declaring aggregation kind `name` by its cost formula and traits (see Aggregation)."""

    def add(cost: CostFormula) -> CostFormula:
        AGGREGATIONS[name] = Aggregation(name, cost, **traits)
        return cost

    return add


def get_aggregation(name: str, where: str = "") -> Aggregation:
    """The declared kind, or a SpecError listing the registered ones."""
    if name not in AGGREGATIONS:
        raise SpecError(where + unknown_name("aggregation", name, AGGREGATIONS))
    return AGGREGATIONS[name]


def option_names() -> frozenset[str]:
    """Every node attribute some kind reads as an option (what a graph file may carry)."""
    return frozenset(key for kind in AGGREGATIONS.values() for key in kind.options)


@register_aggregation("concat", concat=True, verb="concatenates")
def concat_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """Concatenation in ascending source id: nothing beyond the stored aggregate."""
    return Cx()


@register_aggregation("sum", verb="sums")
def sum_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """Elementwise sum (additions are not counted as multiply-adds, as papers count)."""
    return Cx()


@register_aggregation("mean", verb="averages", renormalise=True)
def mean_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """FractalNet's join: the elementwise mean of the (kept) inputs; one multiply per element."""
    return Cx(flops=width * hw * hw)


WEIGHT_INITS = ("ones", "nearest", "uniform", "sigmoid")


@register_aggregation("weighted", verb="weighs", single_is_identity=False,
                      options={"weights": Option("ones", WEIGHT_INITS)})
def weighted_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """sum_i w_i x_i with one learned scalar per in-edge; a multiply-add per input element."""
    return Cx(params=n, flops=n * width * hw * hw)


@register_aggregation("gated", verb="gates", arity=2, single_is_identity=False, carried=True,
                      options={"gate_kernel": Option(3, (1, 3)), "gate_bias": Option(-2.0)})
def gated_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """Highway: the gate conv (with bias) on the carry input, its sigmoid map, one multiply-add per element."""
    k = options["gate_kernel"]
    gate = conv_cx(width, width, k, hw)
    return Cx(gate.params + width, gate.flops + width * hw * hw, gate.acts)


def mudd_hidden(n: int, options: dict) -> int:
    """Hidden width of a port's weight MLP: `expand` times its source count (MUDDFormer's C * L per port)."""
    return max(1, round(options["expand"] * n))


@register_aggregation("mudd", verb="mixes", single_is_identity=False, dynamic=True,
                      options={"expand": Option(1.0)})
def mudd_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """MUDDFormer's dynamic dense aggregation: per-token weights GELU(RMSNorm(x_cur) W1) W2 + a over n inputs."""
    h = mudd_hidden(n, options)
    weights = width * h + h * n
    return Cx(params=weights + n, flops=(weights + n * width) * hw * hw, acts=(h + n) * hw * hw)


@register_aggregation("depth-attention", verb="attends over", single_is_identity=False, dynamic=True)
def depth_attention_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """Attention Residuals: softmax over inputs of w . RMSNorm(x_i), a learned query w per node; scores and sum."""
    return Cx(params=width, flops=2 * n * width * hw * hw, acts=n * hw * hw)


LAUREL_FORMS = ("rw", "lr", "rw+lr")
LAUREL_RANKS = (1, 2, 4, 8, 16, 32, 64, 128)


@register_aggregation("laurel", verb="combines", arity=2, single_is_identity=False, carried=True,
                      options={"form": Option("rw+lr", LAUREL_FORMS), "rank": Option(4, LAUREL_RANKS)})
def laurel_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """LAuReL: y = alpha h + beta (x + B A x) (RW: scalars alpha, beta; LR: rank-r A, B); x the carry."""
    rw = Cx(params=2, flops=2 * width * hw * hw) if "rw" in options["form"] else Cx()
    r = options["rank"]
    lr = Cx(params=2 * r * width, flops=2 * r * width * hw * hw, acts=r * hw * hw) if "lr" in options["form"] else Cx()
    return rw + lr


# Multi-stream state (Hyper-Connections, Zhu et al. 2025; mHC, Xie et al. 2025): n residual streams of
# width C travel side by side as one (.., n*C) tensor; `streams` opens them, `hc-read` reads a layer's
# input from them, `hc-write` mixes them and adds the layer's output, `stream-sum` closes them.
STREAM_COUNTS = tuple(range(1, 65))
STREAM_OPTIONS = {"streams": Option(4, STREAM_COUNTS), "mode": Option("dynamic", ("static", "dynamic")),
                  "mixing": Option("hc", ("hc", "mhc"))}


def stream_width(width: int, options: dict) -> int:
    """The width C of one stream of an (n*C)-channel state; ValueError unless n divides it."""
    n = options["streams"]
    if width % n:
        raise ValueError(f"{n} streams do not divide the width {width} of the stream state")
    return width // n


def _opened(reads: list[int], options: dict) -> int:
    if len(reads) != 1:
        raise ValueError(f"opens streams from one input, has {len(reads)}")
    return reads[0] * options["streams"]


def _read(reads: list[int], options: dict) -> int:
    if len(reads) != 1:
        raise ValueError(f"reads one stream state, has {len(reads)} inputs")
    if options.get("start", 0) >= options["streams"]:
        raise ValueError(f"start {options['start']} is not one of the {options['streams']} streams")
    return stream_width(reads[0], options)


def _written(reads: list[int], options: dict) -> int:
    if len(reads) != 2 or stream_width(reads[0], options) != reads[1]:
        raise ValueError(f"writes a layer's output into the streams: needs the stream state (n*C channels, the "
                         f"lower source id) and one C-channel output, got widths {reads}")
    return reads[0]


@register_aggregation("streams", verb="opens", single_is_identity=False, width_rule=_opened,
                      options={"streams": STREAM_OPTIONS["streams"]})
def streams_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """n copies of the input side by side (Hyper-Connections' initial H = n copies of the embedding)."""
    return Cx()


@register_aggregation("stream-sum", verb="closes", single_is_identity=False, width_rule=_read, stream_option="streams",
                      options={"streams": STREAM_OPTIONS["streams"]})
def stream_sum_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """The sum of the n streams (Hyper-Connections' last hidden state): additions only."""
    return Cx()


@register_aggregation("hc-read", verb="reads", single_is_identity=False, width_rule=_read, stream_option="streams",
                      options={**STREAM_OPTIONS, "start": Option(0, tuple(range(64)))})
def hc_read_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """A layer's input sum_i A_m[i] H_i; dynamic A_m from each normed stream (hc) or the whole normed state (mhc)."""
    k = options["streams"]
    c = width // k
    weighted = Cx(params=k, flops=k * c * hw * hw)
    if options["mode"] == "static":
        return weighted
    dynamic = width * k if options["mixing"] == "mhc" else c  # phi_pre (nC x n), or W_m (C x 1) per stream
    return weighted + Cx(params=dynamic + 1, flops=dynamic * (1 if options["mixing"] == "mhc" else k) * hw * hw)


@register_aggregation("hc-write", verb="writes", single_is_identity=False, width_rule=_written,
                      stream_option="streams",
                      options=STREAM_OPTIONS)
def hc_write_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """H'_j = B_j y + sum_i A_r[i, j] H_i: an n x n stream mixing and n output weights (dynamic parts as hc-read)."""
    k = options["streams"]
    c = width // k
    mixed = Cx(params=k * k + k, flops=(k * k * c + k * c) * hw * hw)
    if options["mode"] == "static":
        return mixed
    if options["mixing"] == "mhc":  # phi_res (nC x n^2), phi_post (nC x n), alpha_res, alpha_post
        return mixed + Cx(params=width * (k * k + k) + 2, flops=width * (k * k + k) * hw * hw)
    return mixed + Cx(params=c * k + c + 2, flops=(k * c * k + k * c) * hw * hw)  # W_r, W_beta, s_alpha, s_beta


# Frac-Connections (Zhu et al. 2025, arXiv 2503.14125): Hyper-Connections with expansion rate 1/m. The state
# keeps its width d and is read as m fractions of width d/m side by side (one node, as the streams above);
# `frac-read` mixes the fractions into a layer's d-wide input, `frac-write` mixes them and adds the layer's
# output, fraction by fraction. The head reads the state itself.
FRACTION_OPTIONS = {"fractions": Option(2, STREAM_COUNTS), "mode": STREAM_OPTIONS["mode"]}


def fraction_width(width: int, options: dict) -> int:
    """The width d/m of one fraction of a d-channel state; ValueError unless m divides it."""
    m = options["fractions"]
    if width % m:
        raise ValueError(f"{m} fractions do not divide the width {width} of the state")
    return width // m


def _frac_read(reads: list[int], options: dict) -> int:
    if len(reads) != 1:
        raise ValueError(f"reads one fractioned state, has {len(reads)} inputs")
    fraction_width(reads[0], options)
    return reads[0]


def _frac_written(reads: list[int], options: dict) -> int:
    if len(reads) != 2 or reads[0] != reads[1]:
        raise ValueError(f"writes a layer's output into the fractions: needs the state (the lower source id) "
                         f"and one output of its width, got widths {reads}")
    fraction_width(reads[0], options)
    return reads[0]


@register_aggregation("frac-read", verb="reads", single_is_identity=False, width_rule=_frac_read,
                      stream_option="fractions",
                      options=FRACTION_OPTIONS)
def frac_read_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """A layer's input: fraction c is sum_i Y[i, c] H_i (an m x m read matrix); dynamic Y from each normed fraction."""
    m = options["fractions"]
    c = width // m
    mixed = Cx(params=m * m, flops=m * m * c * hw * hw)
    if options["mode"] == "static":
        return mixed
    return mixed + Cx(params=c * m + 1, flops=m * c * m * hw * hw)  # W_y (d/m x m) and its scale


@register_aggregation("frac-write", verb="writes", single_is_identity=False, width_rule=_frac_written,
                      stream_option="fractions",
                      options=FRACTION_OPTIONS)
def frac_write_cx(n: int, width: int, hw: int, options: dict) -> Cx:
    """H'_j = B_j y_j + sum_i A_r[i, j] H_i: hc-write's parameters and work over m fractions of width d/m."""
    return hc_write_cx(n, width, hw, {"streams": options["fractions"], "mode": options["mode"], "mixing": "hc"})
