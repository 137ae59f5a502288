"""Batched augmentation with tensor ops (airbench style): no per-image Python work.

Random draws come from an explicit CPU `torch.Generator`, so the same seed gives the same
crops and flips on any device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` pixels and crop back at a random offset per image."""
    B, C, H, W = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    rows = dy[:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(W, device=x.device)  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=gen).lt(0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment_batch(x: torch.Tensor, gen: torch.Generator, *, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """The paper's "+" augmentation: pad-4 random crop, then (if allowed) horizontal flip."""
    x = random_crop(x, pad, gen)
    return random_flip(x, gen) if flip else x
