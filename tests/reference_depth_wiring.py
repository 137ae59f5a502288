"""Hand-written equations of the depth wirings (ports, value residual, dynamic aggregations), independent of the executor.

Each function takes plain tensors and the weights of connectome's modules, and computes what the
papers write: MUDDFormer's per-port dynamic dense aggregation (Xiao et al. 2025, Sec. 3), value
residual learning (Zhou et al. 2024: V'_n = lambda_1 V_1 + lambda_2 V_n), depth attention
(Attention Residuals: softmax over sources of w . RMSNorm(source)).
"""
import math

import torch
import torch.nn.functional as F

from reference_decoder import rms_norm, rotate


def attention(xq, xk, xv, norms, qkv_weight, wo, heads, values_mix=None):
    """Causal attention of separate q/k/v streams, each RMS-normed by its own gain; `values_mix(V)` mixes V first.

    Returns the output (before any residual) and the projected values V of the v stream.
    """
    b, t, c = xq.shape
    wq, wk, wv = qkv_weight.chunk(3)
    nq, nk, nv = (rms_norm(x, g) for x, g in zip((xq, xk, xv), norms))
    values = nv @ wv.T
    mixed = values if values_mix is None else values_mix(values)
    split = lambda y: y.view(b, t, heads, c // heads).transpose(1, 2)  # noqa: E731
    q, k, v = rotate(split(nq @ wq.T)), rotate(split(nk @ wk.T)), split(mixed)
    scores = q @ k.transpose(-1, -2) / math.sqrt(c // heads)
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    y = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
    return y.transpose(1, 2).reshape(b, t, c) @ wo.T, values


def swiglu(x, gain, w_gate, w_up, w_down):
    h = rms_norm(x, gain)
    return (F.silu(h @ w_gate.T) * (h @ w_up.T)) @ w_down.T


def rms(x, eps=1e-6):
    """RMSNorm without a gain."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def mudd_mix(sources, w1, w2, prior):
    """MUDDFormer's dynamic dense aggregation of one port: A = GELU(RMSNorm(X_cur) W1) W2 + a; sum_j A_j X_j."""
    a = F.gelu(rms(sources[-1]) @ w1.T) @ w2.T + prior  # (B, T, n)
    return sum(a[..., j, None] * x for j, x in enumerate(sources))


def depth_attention(sources, query):
    """Attention Residuals: alpha_j = softmax_j(w . RMSNorm(x_j)); sum_j alpha_j x_j."""
    alpha = torch.stack([(rms(x) * query).sum(-1) for x in sources], -1).softmax(-1)
    return sum(alpha[..., j, None] * x for j, x in enumerate(sources))
