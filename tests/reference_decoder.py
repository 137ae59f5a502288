"""A hand-written decoder-only LM (nanoGPT-style loop, modern body), independent of connectome's executor.

RMSNorm, rotary positions (as complex rotations), causal attention through an explicit masked
softmax, SwiGLU MLP, pre-norm residual stream, final RMSNorm and LM head (tied or not). Its
weights are copied from a connectome `prenorm` decoder by `load_from`, so both compute the same
function if the executor wires the sublayers as the standard residual stream.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm(x, weight, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate(x):
    """Rotary positions: channel pairs (i, i + d/2) of each head as one complex number, turned by t * theta_i."""
    t, d = x.shape[-2], x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.arange(t, dtype=torch.float64)[:, None] * theta  # (T, d/2)
    turn = torch.polar(torch.ones_like(angles), angles)
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2:].double()) * turn
    return torch.cat((z.real, z.imag), -1).to(x.dtype)


class Block(nn.Module):
    """x + attn(norm(x)), then + mlp(norm(.))."""

    def __init__(self, width, heads, hidden):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.Parameter(torch.ones(width))
        self.wq = nn.Linear(width, width, bias=False)
        self.wk = nn.Linear(width, width, bias=False)
        self.wv = nn.Linear(width, width, bias=False)
        self.wo = nn.Linear(width, width, bias=False)
        self.norm2 = nn.Parameter(torch.ones(width))
        self.w_gate = nn.Linear(width, hidden, bias=False)
        self.w_up = nn.Linear(width, hidden, bias=False)
        self.w_down = nn.Linear(hidden, width, bias=False)

    def attention(self, x):
        b, t, c = x.shape
        split = lambda y: y.view(b, t, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = rotate(split(self.wq(x))), rotate(split(self.wk(x))), split(self.wv(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(c // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        y = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        return self.wo(y.transpose(1, 2).reshape(b, t, c))

    def forward(self, x):
        x = x + self.attention(rms_norm(x, self.norm1))
        h = rms_norm(x, self.norm2)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class ReferenceDecoder(nn.Module):
    def __init__(self, vocab, width, heads, hidden, n_blocks, tied):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width, heads, hidden) for _ in range(n_blocks))
        self.norm = nn.Parameter(torch.ones(width))
        self.lm_head = None if tied else nn.Linear(width, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        x = rms_norm(x, self.norm)
        return x @ self.embed.weight.T if self.lm_head is None else self.lm_head(x)

    @torch.no_grad()
    def load_from(self, model):
        """Copy a connectome prenorm decoder's weights (sublayer nodes 1, 2, 3, ... = attn, mlp, attn, ...)."""
        self.embed.weight.copy_(model.stem.embedding.weight)
        nodes = model.blocks[0].nodes
        for i, block in enumerate(self.blocks):
            attn, mlp = nodes[str(2 * i + 1)].op, nodes[str(2 * i + 2)].op
            block.norm1.copy_(attn.norm.weight)
            for target, part in zip((block.wq, block.wk, block.wv), attn.qkv.weight.chunk(3)):
                target.weight.copy_(part)
            block.wo.weight.copy_(attn.proj.weight)
            block.norm2.copy_(mlp.norm.weight)
            block.w_gate.weight.copy_(mlp.gate.weight)
            block.w_up.weight.copy_(mlp.up.weight)
            block.w_down.weight.copy_(mlp.down.weight)
        self.norm.copy_(model.head.norm.weight)
        if self.lm_head is not None:
            self.lm_head.weight.copy_(model.head.lm_head.weight)
        return self
