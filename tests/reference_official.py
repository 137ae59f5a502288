"""The depth wirings as their official (or most-used reference) code computes them, transcribed by hand.

Each function restates, in plain tensors and its own words, the computation of one public code base
(never its code), with that code's parametrisation: the fused projections, shared scales, norm
gains, epsilons and orderings connectome's modules split or drop. tests/test_official_wiring.py
maps connectome's parameters onto these and checks values and gradients; README's pattern table
and docs/design.md ("Checked against official code") name each source by repository, commit and file.
"""
import torch


def rms(x, gain=None, eps=1e-6):
    """RMSNorm over the last dimension, with an optional gain."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if gain is None else y * gain


# --- mHC: deepseek-ai/TileKernels (tile_kernels/torch/mhc.py, tile_kernels/modeling/mhc/functional.py) ---
def deepseek_sinkhorn(logits, repeat, eps):
    """Softmax along each row (plus eps), then columns normalised; then repeat - 1 rounds of rows, columns."""
    m = logits.softmax(-1) + eps
    m = m / (m.sum(-2, keepdim=True) + eps)
    for _ in range(repeat - 1):
        m = m / (m.sum(-1, keepdim=True) + eps)
        m = m / (m.sum(-2, keepdim=True) + eps)
    return m


def deepseek_mhc_layer(streams, layer, fn, scale, base, *, post_mult=2.0, pre_eps=1e-6, repeat=20,
                       sinkhorn_eps=1e-6, norm_eps=1e-6):
    """One mHC sublayer on streams (..., n, C): one projection fn (n(n+2), nC) of the flattened state, divided by
    its RMS; three scales (pre, post, res); biases `base`; pre = sigmoid + eps, post = post_mult * sigmoid,
    res = Sinkhorn; layer input sum_m pre_m H_m; output H'_k = post_k y + sum_m res[m, k] H_m."""
    n = streams.shape[-2]
    flat = streams.flatten(-2)
    mixes = (flat @ fn.T) * torch.rsqrt(flat.pow(2).mean(-1, keepdim=True) + norm_eps)
    scales = torch.cat([scale[0].expand(n), scale[1].expand(n), scale[2].expand(n * n)])
    mixes = mixes * scales + base
    pre = torch.sigmoid(mixes[..., :n]) + pre_eps
    post = torch.sigmoid(mixes[..., n:2 * n]) * post_mult
    res = deepseek_sinkhorn(mixes[..., 2 * n:].unflatten(-1, (n, n)), repeat, sinkhorn_eps)
    y = layer((pre.unsqueeze(-1) * streams).sum(-2))
    return post.unsqueeze(-1) * y.unsqueeze(-2) + torch.einsum("...mk,...mc->...kc", res, streams)


def deepseek_mhc_head(streams, fn, scale, base, pre_eps=1e-6, norm_eps=1e-6):
    """The official head's read-out: sum_m (sigmoid(scale * fn . RMSNorm(vec H) + base)_m + eps) H_m."""
    flat = streams.flatten(-2)
    mix = (flat @ fn.T) * torch.rsqrt(flat.pow(2).mean(-1, keepdim=True) + norm_eps)
    weights = torch.sigmoid(mix * scale + base) + pre_eps
    return (weights.unsqueeze(-1) * streams).sum(-2)


# --- Hyper-Connections: lucidrains/hyper-connections (hyper_connections/hyper_connections.py) and the
# factory (wdlctc/hyper-connection-factory, hcfactory/connections/hyper.py) ---
def reference_hc_layer(streams, layer, static_alpha, static_beta, w_alpha=None, w_beta=None, s_alpha=None,
                       s_beta=None, gain=None):
    """One HC sublayer on streams (..., n, C): alpha (n, 1 + n) = static + s_alpha tanh(norm(H_i) W_alpha) per
    stream i (ONE projection and ONE scale for the read column and the n mixing columns), beta likewise with
    W_beta, s_beta; column 0 of alpha^T H is the layer input, columns 1..n the mixed streams; + beta_k y."""
    alpha, beta = static_alpha, static_beta
    if w_alpha is not None:
        normed = rms(streams, gain)
        alpha = static_alpha + s_alpha * torch.tanh(normed @ w_alpha)
        beta = static_beta + s_beta * torch.tanh(normed @ w_beta)
    mixed = torch.einsum("...it,...ic->...tc", alpha.expand(*streams.shape[:-1], -1), streams)
    y = layer(mixed[..., 0, :])
    return mixed[..., 1:, :] + beta.unsqueeze(-1) * y.unsqueeze(-2)


# --- Attention Residuals: MoonshotAI/Attention-Residuals (README.md's PyTorch-style pseudocode) ---
def moonshot_block_attn_res(blocks, partial, query, gain):
    """Softmax over [blocks..., partial] of query . RMSNorm_gain(source) (one norm per sublayer, gain shared)."""
    values = torch.stack(blocks + ([partial] if partial is not None else []))
    logits = torch.einsum("d,nbtd->nbt", query, rms(values, gain))
    return torch.einsum("nbt,nbtd->btd", logits.softmax(0), values)


def moonshot_attnres(x0, layers, head, block_size):
    """The pseudocode's loop over transformer layers (attention, MLP): blocks start as [x0]; before each attention
    at a block boundary (every block_size // 2 layers) the partial sum becomes a block AFTER the attention's
    read; the head reads the blocks and the last partial. `layers`: ((f_attn, q, g), (f_mlp, q, g)) pairs;
    `head`: (q, g). The pseudocode leaves the first layer open (its partial would duplicate x0): here the
    first attention reads the blocks alone, as the paper's equations say (b_0 = embedding)."""
    blocks, partial = [x0], None
    for number, ((attn, q_a, g_a), (mlp, q_m, g_m)) in enumerate(layers):
        h = moonshot_block_attn_res(blocks, partial, q_a, g_a)
        if number and number % (block_size // 2) == 0:
            blocks, partial = blocks + [partial], None
        out = attn(h)
        partial = out if partial is None else partial + out
        h = moonshot_block_attn_res(blocks, partial, q_m, g_m)
        partial = partial + mlp(h)
    return moonshot_block_attn_res(blocks, partial, *head)


# --- LAuReL: the factory's reading (hcfactory/connections/laurel.py; no official code is public) ---
def factory_laurel(x0, layers, form):
    """x <- a f(x) + b (x + x A B) per sublayer with (a, b) = 2 softmax(w) (rw); lr: a = b = 1.
    `layers`: (f, w, A (D, r), B (r, D)) per sublayer."""
    x = x0
    for f, w, a_down, b_up in layers:
        fx = f(x)
        skip = x + (x @ a_down) @ b_up if "lr" in form else x
        a, b = 2 * w.softmax(0) if "rw" in form else (1.0, 1.0)
        x = a * fx + b * skip
    return x


# --- DenseFormer: epfml/DenseFormer (denseformer/denseformer.py, DWAModules) ---
def epfml_denseformer(x0, blocks, alphas, dilation, period):
    """Accumulators per residue class mod `dilation` (x0 in class 0); after block i (from 1) its output joins
    class i mod dilation; when period divides i the next input is alphas[i-1] . that class's outputs."""
    classes = [[x0]] + [[] for _ in range(dilation - 1)]
    x = x0
    for i, block in enumerate(blocks, start=1):
        x = block(x)
        classes[i % dilation].append(x)
        if i % period == 0:
            x = sum(a * y for a, y in zip(alphas[i - 1], classes[i % dilation], strict=True))
    return x
