"""The nn.Modules of the aggregation kinds: how a node combines its inputs (torch side).

Each kind is declared, torch-free, in `connectome.aggregations` (width rule, options, cost);
its module is registered here under the same name with `@join_module(name)` and built once
per node by `make_join`. A module takes the node's inputs in ascending source id (the carry
input of a gated node marked by its index) and returns one tensor.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from connectome.aggregations import AGGREGATIONS, get_aggregation
from connectome.errors import SpecError

JOINS: dict[str, Callable[..., nn.Module]] = {}


def join_module(name: str) -> Callable[[type], type]:
    """Class decorator registering the module of a declared aggregation kind."""

    def add(cls: type) -> type:
        get_aggregation(name)  # declared first: connectome.aggregations owns the names
        JOINS[name] = cls
        return cls

    return add


def make_join(name: str, *, n_inputs: int, width: int, carry: int, options: dict[str, Any],
              dim: int = 1) -> nn.Module:
    """The module joining one node's inputs, or a SpecError listing the kinds that have one."""
    if name not in JOINS:
        known = ", ".join(sorted(JOINS))
        raise SpecError(f"aggregation {name!r} has no module (declared: {', '.join(sorted(AGGREGATIONS))}; "
                        f"with a module: {known})")
    join = JOINS[name](n_inputs=n_inputs, width=width, carry=carry, **options)
    join.dim = dim  # the channel dimension: 1 for (B, C, H, W) maps, -1 for (B, T, C) tokens
    return join


class Join(nn.Module):
    """Base: a join built from the node's in-degree, input width and carry index."""

    dim = 1  # the channel dimension (make_join sets it from the network's layout)

    def __init__(self, *, n_inputs: int, width: int, carry: int) -> None:
        super().__init__()

    def edge_weights(self) -> dict[int, float] | None:
        """The learned static weight of each in-edge, by input position, as forward applies it (None: none).

        Position i is the node's i-th in-edge in ascending source id. A kind whose weights depend on
        the input (a gate, a per-token mix) returns None: connectome.analysis.learned_wiring draws
        static weights only (docs/design.md, "Learned wiring as a picture").
        """
        return None


@join_module("concat")
class Concat(Join):
    """Channel concatenation, oldest source first (as torchvision's DenseNet)."""

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(inputs, self.dim)  # (B, sum C_i, H, W) or (B, T, sum C_i)


@join_module("sum")
class Sum(Join):
    """Elementwise sum (a fresh tensor: the inputs may be kept by running sums)."""

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]
        for t in inputs[1:]:
            out = out + t
        return out


@join_module("mean")
class Mean(Join):
    """FractalNet's join: the elementwise mean of the inputs (after drop-path, of the kept ones)."""

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]
        for t in inputs[1:]:
            out = out + t
        return out / len(inputs)  # (B, C, H, W)


@join_module("weighted")
class Weighted(Join):
    """sum_i w_i x_i, one learned scalar per in-edge (RandWire, DenseFormer).

    `weights`: start at ones, one-hot on the nearest predecessor (the highest source id: the node
    starts as a chain), uniform 1/n (a mean), or sigmoid (RandWire's positive weights
    w_i = sigmoid(theta_i), theta_i = 0 at start, so w_i = 1/2).
    """

    def __init__(self, *, n_inputs: int, width: int, carry: int, weights: str) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry)
        self.positive = weights == "sigmoid"
        start = {"ones": torch.ones(n_inputs), "uniform": torch.full((n_inputs,), 1.0 / n_inputs),
                 "nearest": torch.eye(n_inputs)[-1], "sigmoid": torch.zeros(n_inputs)}[weights]
        self.weight = nn.Parameter(start)

    def effective(self) -> torch.Tensor:
        """The weights w_i the sum applies: sigmoid(theta_i) for positive weights, else the parameters."""
        return torch.sigmoid(self.weight) if self.positive else self.weight

    def edge_weights(self) -> dict[int, float]:
        """w_i by input position (static: the same for every input)."""
        return dict(enumerate(self.effective().detach().float().tolist()))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        w = self.effective()
        out = w[0] * inputs[0]
        for i in range(1, len(inputs)):
            out = out + w[i] * inputs[i]
        return out


@join_module("gated")
class Gated(Join):
    """Highway (Srivastava et al. 2015): y = T(x) * H + (1 - T(x)) * x, x the carry input, H the other.

    T(x) = sigmoid(conv_k(x) + b), a k x k zero-padded conv (k = `gate_kernel`, the same receptive
    field as a 3x3 H by default, as the paper's convolutional highway layers) with its bias
    initialised to `gate_bias` (negative: the layer starts by carrying x).
    """

    def __init__(self, *, n_inputs: int, width: int, carry: int, gate_kernel: int, gate_bias: float) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry)
        self.carry = carry
        self.gate = nn.Conv2d(width, width, gate_kernel, padding=gate_kernel // 2, bias=True)
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x, h = inputs[self.carry], inputs[1 - self.carry]  # (B, C, H, W) each
        t = torch.sigmoid(self.gate(x))
        return x + t * (h - x)  # = t * h + (1 - t) * x
