"""Batched crop and flip: each output image is a shifted window or a mirror of its input."""
import pytest
import torch
import torch.nn.functional as F

from connectome.training.augment import apply, augment_batch, draw, random_crop, random_flip


def _windows(x: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every crop of one zero-padded image, by explicit slicing."""
    padded = F.pad(x, (pad,) * 4)
    H, W = x.shape[-2:]
    return [padded[..., i:i + H, j:j + W] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]


@pytest.mark.parametrize("channels", [1, 3])
def test_crop_is_a_window_of_the_padded_image(channels):
    x = torch.randn(16, channels, 6, 5)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for img, crop in zip(x, out):
        assert any(torch.equal(crop, w) for w in _windows(img, 2))


def test_crop_offsets_vary_across_the_batch():
    x = torch.randn(64, 1, 8, 8)
    out = random_crop(x, 4, torch.Generator().manual_seed(0))
    unchanged = sum(torch.equal(a, b) for a, b in zip(x, out))
    assert unchanged < 16  # only the centre offset (1 in 81) leaves an image as it was


def test_crop_without_padding_is_identity():
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_flip_mirrors_about_half():
    x = torch.randn(400, 1, 3, 4)
    out = random_flip(x, torch.Generator().manual_seed(1))
    same = torch.tensor([torch.equal(a, b) for a, b in zip(x, out)])
    mirrored = torch.tensor([torch.equal(a.flip(-1), b) for a, b in zip(x, out)])
    assert bool((same | mirrored).all())
    assert 150 < int(mirrored.sum()) < 250


def test_same_generator_seed_same_augmentation():
    x = torch.randn(32, 3, 8, 8)
    a = augment_batch(x, torch.Generator().manual_seed(5))
    b = augment_batch(x, torch.Generator().manual_seed(5))
    c = augment_batch(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_no_flip_option_keeps_orientation():
    x = torch.randn(50, 1, 4, 4)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(augment_batch(x, gen(), pad=0, flip=False), x)
    assert not torch.equal(augment_batch(x, gen(), pad=0, flip=True), x)


def test_an_epoch_drawn_at_once_augments_like_batch_by_batch():
    # The trainer draws an epoch's crops and flips up front; the stream (and so every record
    # of an existing seed) is the same as drawing per batch.
    x = torch.randn(70, 3, 8, 8)
    sizes = [32, 32, 6]
    per_batch, gen = [], torch.Generator().manual_seed(3)
    for chunk in x.split(32):
        per_batch.append(augment_batch(chunk, gen))
    draws = draw(torch.Generator().manual_seed(3), sizes)
    at_once = [apply(chunk, draws[32 * i:32 * i + len(chunk)]) for i, chunk in enumerate(x.split(32))]
    assert all(torch.equal(a, b) for a, b in zip(per_batch, at_once))


def test_draws_without_flips_leave_orientation():
    d = draw(torch.Generator().manual_seed(0), [5], pad=0, flip=False)
    x = torch.randn(5, 1, 4, 4)
    assert d.flip is None and torch.equal(apply(x, d), x)
