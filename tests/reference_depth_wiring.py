"""Hand-written equations of the depth wirings, independent of the executor.

Each function takes plain tensors and the weights of connectome's modules, and computes what the
papers write: MUDDFormer's per-port dynamic dense aggregation (Xiao et al. 2025, Sec. 3), value
residual learning (Zhou et al. 2024: V'_n = lambda_1 V_1 + lambda_2 V_n), depth attention
(Attention Residuals: softmax over sources of w . RMSNorm(source)), Hyper-Connections (Zhu et al.
2025: H' = B^T y + A_r^T H, y = layer(A_m^T H)), mHC's Sinkhorn projection and Frac-Connections
(Zhu et al. 2025, arXiv 2503.14125: H = h cut into m fractions, H' = B^T T(Y^T H) + A_r^T H, the layer's
input and output fraction by fraction).
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


def sinkhorn(m, iterations=20):
    """Sinkhorn-Knopp on exp(m): alternately divide each row, then each column, by its sum."""
    p = torch.exp(m - m.amax((-2, -1), keepdim=True))
    for _ in range(iterations):
        p = p / p.sum(-1, keepdim=True)
        p = p / p.sum(-2, keepdim=True)
    return p


def hc_weights(streams, read, write, mhc):
    """Hyper-Connections' A_m (..., n), A_r (..., n, n), B (..., n) from the streams H_1..H_n (a list)."""
    n = len(streams)
    if mhc:  # mHC: from the whole flattened state, RMS-normed
        flat = rms(torch.cat(streams, -1))
        pre, res, post = read.prior, write.mix_prior, write.out_prior
        if hasattr(read, "proj"):
            pre = pre + read.scale * flat @ read.proj
            res = res + write.mix_scale * (flat @ write.mix_proj).view(*flat.shape[:-1], n, n)
            post = post + write.out_scale * flat @ write.out_proj
        return torch.sigmoid(pre), sinkhorn(res), 2 * torch.sigmoid(post)
    if not hasattr(read, "proj"):
        return read.prior, write.mix_prior, write.out_prior
    a_m = torch.stack([read.prior[i] + read.scale * torch.tanh(rms(h) @ read.proj) for i, h in enumerate(streams)], -1)
    return (a_m, *hc_write_weights(streams, write))


def hc_write_weights(streams, write):
    """Dynamic A_r[i, j] = I_ij + s_a tanh(RMSNorm(H_i) . W_r[:, j]) and B_j = 1 + s_b tanh(RMSNorm(H_j) . w_b)."""
    rows = [write.mix_prior[i] + write.mix_scale * torch.tanh(rms(h) @ write.mix_proj) for i, h in enumerate(streams)]
    b = torch.stack([write.out_prior[j] + write.out_scale * torch.tanh(rms(h) @ write.out_proj)
                     for j, h in enumerate(streams)], -1)
    return torch.stack(rows, -2), b


def hyper_connections(h0, layers, n, mhc):
    """H = n copies of h0; per layer: x = sum_i A_m[i] H_i, y = layer(x), H'_j = B_j y + sum_i A_r[i, j] H_i;
    returns sum_j H_j. `layers`: (layer, read join, write join) triples."""
    streams = [h0] * n
    for layer, read, write in layers:
        a_m, a_r, b = hc_weights(streams, read, write, mhc)
        y = layer(sum(a_m[..., i, None] * h for i, h in enumerate(streams)))
        streams = [b[..., j, None] * y + sum(a_r[..., i, j, None] * h for i, h in enumerate(streams))
                   for j in range(n)]
    return sum(streams)


def frac_connections(h0, layers, m):
    """H = h0 cut into m fractions; per layer: read fraction c = sum_i Y[i, c] H_i, y = layer(read fractions side
    by side) cut into y_1..y_m, H'_j = B_j y_j + sum_i A_r[i, j] H_i; returns the fractions side by side.
    Y_ic = I_ic + s tanh(RMSNorm(H_i) . W_y[:, c]) (dynamic), A_r and B as hyper-connections'."""
    fractions = list(h0.chunk(m, -1))
    for layer, read, write in layers:
        if hasattr(read, "proj"):
            y_w = torch.stack([read.prior[i] + read.scale * torch.tanh(rms(h) @ read.proj)
                               for i, h in enumerate(fractions)], -2)
            a_r, b = hc_write_weights(fractions, write)
        else:
            y_w, a_r, b = read.prior, write.mix_prior, write.out_prior
        x = torch.cat([sum(y_w[..., i, c, None] * h for i, h in enumerate(fractions)) for c in range(m)], -1)
        ys = layer(x).chunk(m, -1)
        fractions = [b[..., j, None] * ys[j] + sum(a_r[..., i, j, None] * h for i, h in enumerate(fractions))
                     for j in range(m)]
    return torch.cat(fractions, -1)
