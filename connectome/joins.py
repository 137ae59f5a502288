"""The nn.Modules of the aggregation kinds: how a node combines its inputs (torch side).

Each kind is declared, torch-free, in `connectome.aggregations` (width rule, options, cost);
its module is registered here under the same name with `@join_module(name)` and built once
per node by `make_join`. A module takes the node's inputs in ascending source id (the carry
input of a gated node marked by its index) and returns one tensor.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from connectome.aggregations import AGGREGATIONS, get_aggregation, mudd_hidden
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
    join.kind = name  # the declared kind (its traits: connectome.aggregations)
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

    def token_weights(self, inputs: list[torch.Tensor]) -> torch.Tensor | None:
        """The weight of each in-edge at each position, (..., n) by input position, as forward applies it.

        None for kinds whose weights do not depend on the input, or are not one per in-edge (a gate's
        are per channel, a stream mixing's per stream): connectome.analysis.learned_wiring records
        these over validation tokens and draws their mean and spread.
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


def rms_normed(x: torch.Tensor, dim: int, eps: float = 1e-6) -> torch.Tensor:
    """x / RMS(x) along the channel dimension, without a gain."""
    return x * torch.rsqrt(x.pow(2).mean(dim, keepdim=True) + eps)


def weigh(inputs: list[torch.Tensor], weights: torch.Tensor, dim: int) -> torch.Tensor:
    """sum_i w_i x_i with per-position weights (..., n) whose positions are the inputs' without the channel dim."""
    out = weights[..., 0].unsqueeze(dim) * inputs[0]
    for i in range(1, len(inputs)):
        out = out + weights[..., i].unsqueeze(dim) * inputs[i]
    return out


@join_module("mudd")
class DynamicDense(Join):
    """MUDDFormer (Xiao et al. 2025): per position, w = GELU(RMSNorm(x_cur) W1) W2 + a; output sum_i w_i x_i.

    x_cur is the input of the highest source id (the current state). As its official code: RMSNorm
    without a gain, W1 ~ N(0, 1/width), W2 = 0, a one-hot on x_cur, so the port starts by reading
    x_cur alone. Hidden width: `expand` times the number of inputs (docs/design.md says why).
    """

    def __init__(self, *, n_inputs: int, width: int, carry: int, expand: float) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry)
        hidden = mudd_hidden(n_inputs, {"expand": expand})
        self.w1 = nn.Linear(width, hidden, bias=False)
        nn.init.normal_(self.w1.weight, std=width ** -0.5)
        self.w2 = nn.Linear(hidden, n_inputs, bias=False)
        nn.init.zeros_(self.w2.weight)
        self.prior = nn.Parameter(torch.eye(n_inputs)[-1])  # the static weights a

    def token_weights(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """w per position, (B, T, n)."""
        x = rms_normed(inputs[-1], self.dim).movedim(self.dim, -1)  # (B, T, C) or (B, H, W, C)
        return self.w2(F.gelu(self.w1(x))) + self.prior

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return weigh(inputs, self.token_weights(inputs), self.dim)


@join_module("depth-attention")
class DepthAttention(Join):
    """Attention Residuals: per position, alpha = softmax_i(w . RMSNorm(x_i)); output sum_i alpha_i x_i.

    The query w is learned per node and starts at zero, so the node starts as the mean of its inputs;
    keys are RMS-normed without a gain (w scales channels already).
    """

    def __init__(self, *, n_inputs: int, width: int, carry: int) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry)
        self.query = nn.Parameter(torch.zeros(width))

    def token_weights(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """alpha per position, (B, T, n)."""
        scores = [(rms_normed(x, self.dim).movedim(self.dim, -1) * self.query).sum(-1) for x in inputs]
        return torch.stack(scores, -1).softmax(-1)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return weigh(inputs, self.token_weights(inputs), self.dim)


@join_module("laurel")
class Laurel(Join):
    """LAuReL (Menghani et al. 2025): y = alpha h + beta (x + B A x), x the carry input, h the other.

    `form` rw: learned scalars alpha, beta (no A, B); lr: alpha = beta = 1 and the rank-`rank` map
    B A; rw+lr: both. alpha = beta = 1 and B = 0 at start (A ~ N(0, 1/width)), so the node starts
    as the residual sum x + h.
    """

    def __init__(self, *, n_inputs: int, width: int, carry: int, form: str, rank: int) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry)
        self.carry = carry
        self.alpha = nn.Parameter(torch.ones(())) if "rw" in form else None
        self.beta = nn.Parameter(torch.ones(())) if "rw" in form else None
        self.down = self.up = None
        if "lr" in form:
            self.down = nn.Linear(width, rank, bias=False)  # A
            nn.init.normal_(self.down.weight, std=width ** -0.5)
            self.up = nn.Linear(rank, width, bias=False)  # B
            nn.init.zeros_(self.up.weight)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x, h = inputs[self.carry], inputs[1 - self.carry]
        if self.up is not None:
            x = x + self.up(self.down(x.movedim(self.dim, -1))).movedim(-1, self.dim)
        return h + x if self.alpha is None else self.alpha * h + self.beta * x


# Multi-stream state: n streams of width C side by side as one (.., n*C) tensor (connectome.aggregations).
def sinkhorn(logits: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """A doubly stochastic matrix from (..., n, n) logits: exp, then rows and columns normalised in turn (mHC)."""
    m = (logits - logits.amax((-2, -1), keepdim=True)).exp()
    for _ in range(iterations):
        m = m / m.sum(-1, keepdim=True)
        m = m / m.sum(-2, keepdim=True)
    return m


class StreamJoin(Join):
    """Base of the multi-stream kinds: the stream count n, the stream width C, and the state as (..., n, C)."""

    def __init__(self, *, n_inputs: int, width: int, carry: int, streams: int, **options: Any) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry)
        self.n = streams

    def split(self, state: torch.Tensor) -> torch.Tensor:
        """(B, T, n*C) or (B, n*C, H, W) -> (..., n, C), channels last."""
        return state.movedim(self.dim, -1).unflatten(-1, (self.n, -1))

    def joined(self, streams: torch.Tensor) -> torch.Tensor:
        """(..., n, C) -> the state's layout."""
        return streams.flatten(-2).movedim(-1, self.dim)


@join_module("streams")
class OpenStreams(StreamJoin):
    """n copies of the input side by side: Hyper-Connections' initial state."""

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(inputs * self.n, self.dim)  # (B, T, n*C)


@join_module("stream-sum")
class SumStreams(StreamJoin):
    """The sum of the n streams (what the head reads)."""

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.split(inputs[0]).sum(-2).movedim(-1, self.dim)  # (B, T, C)


@join_module("hc-read")
class HyperRead(StreamJoin):
    """A layer's input from the streams: sum_i A_m[i] H_i (Hyper-Connections' width connection A_m).

    hc: A_m = a + s tanh(RMSNorm(H_i) . w_m) per stream (dynamic) or a (static); a one-hot on stream
    `start`. mhc: A_m = sigmoid(b + alpha RMSNorm(H) phi) over the flattened state, b = -log(n - 1)
    (A_m = 1/n: the mean of the streams). w_m and phi start at zero, s and alpha at 0.01.
    """

    def __init__(self, *, n_inputs: int, width: int, carry: int, streams: int, mode: str, mixing: str,
                 start: int) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry, streams=streams)
        self.mhc, self.dynamic = mixing == "mhc", mode == "dynamic"
        mean = torch.full((streams,), -math.log(max(streams - 1, 1)))  # sigmoid(-log(n - 1)) = 1/n
        self.prior = nn.Parameter(mean if self.mhc else torch.eye(streams)[start])
        if self.dynamic:
            self.scale = nn.Parameter(torch.tensor(0.01))
            self.proj = nn.Parameter(torch.zeros(width, streams) if self.mhc else torch.zeros(width // streams))

    def weights(self, streams: torch.Tensor) -> torch.Tensor:
        """A_m per position, (..., n)."""
        if self.mhc:
            dynamic = self.scale * (rms_normed(streams.flatten(-2), -1) @ self.proj) if self.dynamic else 0
            return torch.sigmoid(self.prior + dynamic)
        if not self.dynamic:
            return self.prior
        return self.prior + self.scale * torch.tanh(rms_normed(streams, -1) @ self.proj)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        streams = self.split(inputs[0])  # (..., n, C)
        return (self.weights(streams).unsqueeze(-1) * streams).sum(-2).movedim(-1, self.dim)  # (B, T, C)


@join_module("hc-write")
class HyperWrite(StreamJoin):
    """The next state: H'_j = B_j y + sum_i A_r[i, j] H_i (Hyper-Connections' depth connection B, width A_r).

    hc: A_r = I + s_a tanh(RMSNorm(H_i) W_r), B = 1 + s_b tanh(RMSNorm(H_j) . w_b) (static: I and 1).
    mhc: A_r = Sinkhorn(b_r + alpha_r RMSNorm(H) phi_r) (doubly stochastic; b_r = 0: uniform 1/n),
    B = 2 sigmoid(b_b + alpha_b RMSNorm(H) phi_b) (b_b = 0: B = 1). Projections start at zero, scales at 0.01.
    """

    def __init__(self, *, n_inputs: int, width: int, carry: int, streams: int, mode: str, mixing: str) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry, streams=streams)
        self.mhc, self.dynamic = mixing == "mhc", mode == "dynamic"
        n, c = streams, width // streams
        self.mix_prior = nn.Parameter(torch.zeros(n, n) if self.mhc else torch.eye(n))
        self.out_prior = nn.Parameter(torch.zeros(n) if self.mhc else torch.ones(n))
        if self.dynamic:
            self.mix_scale, self.out_scale = nn.Parameter(torch.tensor(0.01)), nn.Parameter(torch.tensor(0.01))
            self.mix_proj = nn.Parameter(torch.zeros(width, n * n) if self.mhc else torch.zeros(c, n))
            self.out_proj = nn.Parameter(torch.zeros(width, n) if self.mhc else torch.zeros(c))

    def weights(self, streams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A_r (..., n, n) and B (..., n) per position."""
        if not self.dynamic:
            mix, out = self.mix_prior, self.out_prior
        elif self.mhc:
            flat = rms_normed(streams.flatten(-2), -1)  # (..., n*C)
            mix = self.mix_prior + self.mix_scale * (flat @ self.mix_proj).unflatten(-1, (self.n, self.n))
            out = self.out_prior + self.out_scale * (flat @ self.out_proj)
        else:
            normed = rms_normed(streams, -1)  # (..., n, C)
            mix = self.mix_prior + self.mix_scale * torch.tanh(normed @ self.mix_proj)
            out = self.out_prior + self.out_scale * torch.tanh(normed @ self.out_proj)
        return (sinkhorn(mix), 2 * torch.sigmoid(out)) if self.mhc else (mix, out)

    def spread(self, y: torch.Tensor) -> torch.Tensor:
        """The layer's output as the streams receive it: all of y for every stream, (..., 1, C)."""
        return y.movedim(self.dim, -1).unsqueeze(-2)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        streams, y = self.split(inputs[0]), self.spread(inputs[1])  # (..., n, C), (..., 1 or n, C)
        mix, out = self.weights(streams)
        mixed = (mix.unsqueeze(-1) * streams.unsqueeze(-2)).sum(-3)  # sum_i A_r[i, j] H_i: (..., n, C)
        return self.joined(mixed + out.unsqueeze(-1) * y)


@join_module("frac-read")
class FracRead(StreamJoin):
    """Frac-Connections' layer input: fraction c is sum_i Y[i, c] H_i, the m fractions side by side (width d).

    Y = I + s tanh(RMSNorm(H_i) W_y) (row i from fraction i; dynamic) or I (static): the layer starts by
    reading the state as it is. W_y starts at zero, s at 0.01 (as hc-read).
    """

    def __init__(self, *, n_inputs: int, width: int, carry: int, fractions: int, mode: str) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry, streams=fractions)
        self.dynamic = mode == "dynamic"
        self.prior = nn.Parameter(torch.eye(fractions))
        if self.dynamic:
            self.scale = nn.Parameter(torch.tensor(0.01))
            self.proj = nn.Parameter(torch.zeros(width // fractions, fractions))

    def weights(self, fractions: torch.Tensor) -> torch.Tensor:
        """Y per position, (..., m, m): row i weighs fraction i into each read fraction."""
        if not self.dynamic:
            return self.prior
        return self.prior + self.scale * torch.tanh(rms_normed(fractions, -1) @ self.proj)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        fractions = self.split(inputs[0])  # (..., m, d/m)
        return self.joined(self.weights(fractions).transpose(-1, -2) @ fractions)  # Y^T H: (B, T, d)


@join_module("frac-write")
class FracWrite(HyperWrite):
    """Frac-Connections' next state: H'_j = B_j y_j + sum_i A_r[i, j] H_i, y_j the layer output's fraction j.

    A_r and B as hc-write's hc mixing over the m fractions (I and 1 at start: the state plus y).
    """

    def __init__(self, *, n_inputs: int, width: int, carry: int, fractions: int, mode: str) -> None:
        super().__init__(n_inputs=n_inputs, width=width, carry=carry, streams=fractions, mode=mode, mixing="hc")

    def spread(self, y: torch.Tensor) -> torch.Tensor:
        """Fraction j of y to fraction j of the state, (..., m, d/m)."""
        return self.split(y)
