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

    def input_width(self, reads: list[int]) -> int:
        """Channels of the aggregate from the channels of the in-edges."""
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
