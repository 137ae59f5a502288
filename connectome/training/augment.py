"""Batched augmentation with tensor ops (airbench style): no per-image Python work.

Random draws come from an explicit CPU `torch.Generator`, so the same seed gives the same
crops and flips on any device. The trainer draws a whole epoch's offsets and flips at once
(`draw`) and copies them to the device in one non-blocking transfer; drawing batch by batch
(`augment_batch`) consumes the generator identically, so both give the same images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from connectome.training.device import to_device


@dataclass(frozen=True)
class Draws:
    """Crop offsets and flips of a run of images, drawn ahead of use."""

    pad: int
    dy: torch.Tensor  # (N,) int64 row offsets in [0, 2 * pad]
    dx: torch.Tensor  # (N,) int64 column offsets
    flip: torch.Tensor | None  # (N,) bool; None when flips are not allowed

    def __getitem__(self, s: slice) -> Draws:
        return Draws(self.pad, self.dy[s], self.dx[s], None if self.flip is None else self.flip[s])

    def to(self, device: torch.device) -> Draws:
        """On the device, copied without blocking the host."""
        flip = None if self.flip is None else to_device(self.flip, device)
        return Draws(self.pad, to_device(self.dy, device), to_device(self.dx, device), flip)


def draw(gen: torch.Generator, sizes: Sequence[int], *, pad: int = 4, flip: bool = True) -> Draws:
    """Offsets and flips for consecutive batches of these sizes, in the per-batch draw order."""
    dy, dx, flips = [], [], []
    for b in sizes:  # per batch: rows, columns, then flips, as the per-batch functions draw them
        dy.append(torch.randint(0, 2 * pad + 1, (b,), generator=gen))
        dx.append(torch.randint(0, 2 * pad + 1, (b,), generator=gen))
        if flip:
            flips.append(torch.rand(b, generator=gen).lt(0.5))
    cat = lambda parts: torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)  # noqa: E731
    return Draws(pad, cat(dy), cat(dx), torch.cat(flips) if flip and flips else None)


def crop(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Zero-pad by `pad` pixels and crop back at offsets (dy, dx) per image (on x's device)."""
    B, C, H, W = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    rows = dy.to(x.device)[:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = dx.to(x.device)[:, None] + torch.arange(W, device=x.device)  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def flip_where(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose flag is set."""
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def apply(x: torch.Tensor, draws: Draws) -> torch.Tensor:
    """Crop, then (if drawn) flip, a batch with its pre-drawn randomness."""
    x = crop(x, draws.pad, draws.dy, draws.dx)
    return x if draws.flip is None else flip_where(x, draws.flip)


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` pixels and crop back at a random offset per image."""
    d = draw(gen, [x.shape[0]], pad=pad, flip=False)
    return crop(x, pad, d.dy, d.dx)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    return flip_where(x, torch.rand(x.shape[0], generator=gen).lt(0.5))


def augment_batch(x: torch.Tensor, gen: torch.Generator, *, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """The paper's "+" augmentation: pad-4 random crop, then (if allowed) horizontal flip."""
    return apply(x, draw(gen, [x.shape[0]], pad=pad, flip=flip))
