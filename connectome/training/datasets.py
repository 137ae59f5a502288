"""Dataset registry and loaders: whole datasets as uint8 tensors, split and subsampled by seed.

Files are looked up in `DataConfig.root`, `$CONNECTOME_DATA`, `./data`, then system
directories (Debian's `/usr/share/datasets/fashion-mnist`); if missing, torchvision downloads
them where the network allows. Images stay uint8 (N, C, H, W) on the training device (4x less
memory than float) and are normalised per batch by `DataSplits.batch`.
"""
from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from connectome.errors import DatasetError
from connectome.training.augment import Draws, apply, augment_batch, draw
# DATASETS and DatasetInfo are re-exported: the registry is the catalog's, the readers are here.
from connectome.training.catalog import DATASETS, DatasetInfo, augments, dataset_info, val_images  # noqa: F401
from connectome.training.config import DataConfig, SyntheticConfig
from connectome.training.corpus import data_roots  # noqa: F401 - one owner of the search order

@dataclass(frozen=True)
class RawData:
    """A dataset as loaded: uint8 images (N, C, H, W) and int64 labels, train and test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int
    # Only the first `splittable` training images may go to validation (None = all of them).
    splittable: int | None = None


# ---------------------------------------------------------------- readers


def _idx_array(path: Path) -> np.ndarray:
    """Parse an idx file (MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3] if len(data) > 3 else 0
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if data[:3] != b"\x00\x00\x08" or not ndim or len(data) != 4 + 4 * ndim + int(np.prod(shape, dtype=object)):
        raise DatasetError(f"{path} is not an idx file of uint8 (its header does not match its size)")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_file(directory: Path, stem: str) -> Path:
    """The idx file `stem`, gzipped or plain."""
    gz = directory / f"{stem}.gz"
    return gz if gz.exists() else directory / stem


def _read_idx(directory: Path, cfg: DataConfig) -> RawData:
    """MNIST / Fashion-MNIST: 28x28 grayscale, 60k train, 10k test."""
    def part(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = _idx_array(_idx_file(directory, f"{prefix}-images-idx3-ubyte"))
        y = _idx_array(_idx_file(directory, f"{prefix}-labels-idx1-ubyte"))
        return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))
    train_x, train_y = part("train")
    test_x, test_y = part("t10k")
    return RawData(train_x, train_y, test_x, test_y, classes=10)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """`_codecs.encode` as Python 3 pickles bytes at protocol 2, limited to latin-1."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


# The only globals a CIFAR batch refers to: numpy's array reconstruction (under its numpy 1 and
# numpy 2 module names) and bytes. Anything else (os.system, builtins.eval, ...) is refused, so a
# crafted file in ./data cannot run code.
try:  # numpy 2 moved numpy.core to numpy._core
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    **{(module, "_reconstruct"): _reconstruct for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _frombuffer for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, strings, numbers and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a dataset file never needs") from None


def _unpickle(path: Path, label_key: str) -> dict:
    """A CIFAR python batch, read without running code from the file; DatasetError if it is not one."""
    try:
        with open(path, "rb") as f:
            batch = _DataUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DatasetError(f"{path} is not a CIFAR python batch: {err}") from None
    if isinstance(batch, dict):  # Python 3 writers key by bytes; the original files decode to str
        batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data = batch.get("data") if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32 and isinstance(batch.get(label_key), list)
            and len(batch[label_key]) == len(data)):
        raise DatasetError(f"{path} is not a CIFAR python batch: expected a dict with uint8 `data` "
                           f"of shape (N, 3072) and a list of N `{label_key}`")
    return batch


def _cifar_arrays(batches: list[dict], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    return torch.from_numpy(x), torch.from_numpy(y)


def _read_cifar10(directory: Path, cfg: DataConfig) -> RawData:
    """CIFAR-10 python batches (as torchvision downloads them)."""
    train = [_unpickle(directory / f"data_batch_{i}", "labels") for i in range(1, 6)]
    train_x, train_y = _cifar_arrays(train, "labels")
    test_x, test_y = _cifar_arrays([_unpickle(directory / "test_batch", "labels")], "labels")
    return RawData(train_x, train_y, test_x, test_y, classes=10)


def _read_cifar100(directory: Path, cfg: DataConfig) -> RawData:
    """CIFAR-100 python files, fine labels."""
    train_x, train_y = _cifar_arrays([_unpickle(directory / "train", "fine_labels")], "fine_labels")
    test_x, test_y = _cifar_arrays([_unpickle(directory / "test", "fine_labels")], "fine_labels")
    return RawData(train_x, train_y, test_x, test_y, classes=100)


def _svhn_part(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from scipy.io import loadmat

    try:  # loadmat builds arrays only (no code), but a wrong file must still be one line
        mat = loadmat(path)
        x = np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))  # (32, 32, 3, N) -> (N, 3, 32, 32)
        y = mat["y"].astype(np.int64).ravel() % 10  # the files label digit 0 as 10
    except (KeyError, ValueError, TypeError, IndexError, OSError, NotImplementedError) as err:
        raise DatasetError(f"{path} is not an SVHN .mat file with X (32, 32, 3, N) and y: "
                           f"{type(err).__name__}: {err}") from None
    return torch.from_numpy(x), torch.from_numpy(y)


def _read_svhn(directory: Path, cfg: DataConfig) -> RawData:
    """SVHN cropped digits (.mat files); `svhn_extra` adds the extra set to training."""
    train_x, train_y = _svhn_part(directory / "train_32x32.mat")
    test_x, test_y = _svhn_part(directory / "test_32x32.mat")
    splittable = len(train_y)
    if cfg.svhn_extra:
        extra = directory / "extra_32x32.mat"
        if not extra.exists():
            raise DatasetError(f"svhn_extra is set but {extra} is missing; download extra_32x32.mat "
                               "from http://ufldl.stanford.edu/housenumbers/ or set data.svhn_extra: false")
        extra_x, extra_y = _svhn_part(extra)
        train_x, train_y = torch.cat([train_x, extra_x]), torch.cat([train_y, extra_y])
    return RawData(train_x, train_y, test_x, test_y, classes=10, splittable=splittable)


def _jpeg_stack(paths: list[Path]) -> torch.Tensor:
    """JPEG files as one uint8 (N, 3, H, W) tensor (grayscale ones converted to RGB)."""
    from PIL import Image

    arrays = []
    for path in paths:
        with Image.open(path) as image:
            arrays.append(np.asarray(image.convert("RGB")))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _read_tiny_imagenet(directory: Path, cfg: DataConfig) -> RawData:
    """Tiny-ImageNet's folders: train/<wnid>/images/*.JPEG, val/images with val/val_annotations.txt (the test split)."""
    wnids = (directory / "wnids.txt").read_text().split()
    label = {w: i for i, w in enumerate(wnids)}
    train = [(p, label[w]) for w in wnids for p in sorted((directory / "train" / w / "images").glob("*.JPEG"))]
    rows = [line.split("\t") for line in (directory / "val" / "val_annotations.txt").read_text().splitlines() if line]
    unknown = sorted({r[1] for r in rows} - set(label))
    if not train or unknown:
        raise DatasetError(f"{directory} is not a complete Tiny-ImageNet folder: "
                           + (f"val labels {unknown[:3]} are not in wnids.txt" if unknown else "no training images"))
    test = [(directory / "val" / "images" / r[0], label[r[1]]) for r in rows]
    as_labels = lambda pairs: torch.tensor([y for _, y in pairs], dtype=torch.int64)  # noqa: E731
    return RawData(_jpeg_stack([p for p, _ in train]), as_labels(train), _jpeg_stack([p for p, _ in test]),
                   as_labels(test), classes=len(wnids))


def make_synthetic(cfg: SyntheticConfig) -> RawData:
    """Learnable images: a smooth random pattern per class, shifted, plus noise."""
    gen = torch.Generator().manual_seed(cfg.seed)
    coarse = torch.randn(cfg.classes, cfg.channels, 4, 4, generator=gen)
    protos = torch.nn.functional.interpolate(coarse, size=(cfg.size, cfg.size), mode="bilinear",
                                             align_corners=False)  # (K, C, S, S)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, cfg.classes, (n,), generator=gen)
        x = protos[y] + cfg.noise * torch.randn(n, cfg.channels, cfg.size, cfg.size, generator=gen)
        shift = int(torch.randint(-2, 3, (1,), generator=gen))
        x = torch.roll(x, shifts=shift, dims=-1)
        return (torch.sigmoid(x) * 255).round().to(torch.uint8), y

    train_x, train_y = sample(cfg.train)
    test_x, test_y = sample(cfg.test)
    return RawData(train_x, train_y, test_x, test_y, classes=cfg.classes)


# File formats -> readers (connectome.training.catalog.DatasetInfo.reader names one).
READERS: dict[str, Callable[[Path, DataConfig], RawData]] = {
    "idx": _read_idx,
    "cifar10": _read_cifar10,
    "cifar100": _read_cifar100,
    "svhn": _read_svhn,
    "tiny-imagenet": _read_tiny_imagenet,
    "synthetic": lambda directory, cfg: make_synthetic(cfg.synthetic),
}


# ---------------------------------------------------------------- lookup


def candidate_dirs(name: str, cfg: DataConfig) -> list[Path]:
    """Every directory that may hold the dataset, in search order."""
    info = dataset_info(name)
    dirs = [root / sub for root in data_roots(cfg) for sub in info.dirs]
    return dirs + [Path(d) for d in info.system_dirs]


def _holds(directory: Path, files: tuple[str, ...]) -> bool:
    """True if every file is there (idx files may also be un-gzipped)."""
    return all((directory / f).exists() or (directory / f.removesuffix(".gz")).exists() for f in files)


def find_dataset(name: str, cfg: DataConfig) -> Path | None:
    """The first directory that holds the dataset's files, or None."""
    info = dataset_info(name)
    return next((d for d in candidate_dirs(name, cfg) if _holds(d, info.files)), None)


def _download(name: str, cfg: DataConfig) -> None:
    """Fetch the files with torchvision into the first data root."""
    import torchvision.datasets as tvd

    info = dataset_info(name)
    root = data_roots(cfg)[0]
    cls = getattr(tvd, info.torchvision)
    if name == "svhn":
        root = root / "svhn"
        for split in ("train", "test"):
            cls(str(root), split=split, download=True)
    else:
        for train in (True, False):
            cls(str(root), train=train, download=True)


def _missing(name: str, cfg: DataConfig, why: str) -> DatasetError:
    info = dataset_info(name)
    looked = ", ".join(str(d) for d in candidate_dirs(name, cfg))
    return DatasetError(f"dataset {name!r} not found (looked in: {looked}); {why}. "
                        f"To get it: {info.how_to_get}")


def load_raw(cfg: DataConfig) -> RawData:
    """Read the dataset named by cfg, downloading it if allowed and missing."""
    info = dataset_info(cfg.name)
    if info.reader not in READERS:
        raise DatasetError(f"dataset {cfg.name!r} is not images: the {info.recipe!r} recipe reads it "
                           "(connectome/training/trainer.py RECIPES)")
    if not info.files:
        return READERS[info.reader](Path("."), cfg)
    directory = find_dataset(cfg.name, cfg)
    if directory is None:
        if not cfg.download or info.torchvision is None:
            why = "download is off (data.download: false)" if not cfg.download else "connectome cannot download it"
            raise _missing(cfg.name, cfg, why)
        try:
            _download(cfg.name, cfg)
        except Exception as err:  # network errors come in many types (URLError, OSError, ...)
            reason = " ".join(str(err).split())  # torchvision's message spans lines; the CLI prints one
            raise _missing(cfg.name, cfg, f"download failed ({type(err).__name__}: {reason})") from err
        directory = find_dataset(cfg.name, cfg)
        if directory is None:
            raise _missing(cfg.name, cfg, "download finished but the files are not where expected")
    return READERS[info.reader](directory, cfg)


# ---------------------------------------------------------------- splits on the device


@dataclass(frozen=True)
class DataSplits:
    """Train/val/test on the device as uint8 images, with normalisation and augmentation."""

    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor  # (1, C, 1, 1) float, on the device
    std: torch.Tensor
    classes: int
    augment: bool
    flip: bool

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.train_x.shape[1:])

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images to per-channel standardised float."""
        return (x.float() / 255.0 - self.mean) / self.std

    def draw_augment(self, gen: torch.Generator, sizes: Sequence[int]) -> Draws | None:
        """An epoch's crops and flips for batches of these sizes, on the device; None without augmentation."""
        if not self.augment:
            return None
        return draw(gen, sizes, flip=self.flip).to(self.train_x.device)

    def batch(self, idx: torch.Tensor, aug: Draws | torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """A normalised (and, when enabled, augmented) training batch.

        `aug` is the batch's slice of `draw_augment`, or a generator to draw from now.
        """
        x = self.normalize(self.train_x[idx])
        if self.augment:
            x = augment_batch(x, aug, flip=self.flip) if isinstance(aug, torch.Generator) else apply(x, aug)
        return x, self.train_y[idx]


def split_indices(n: int, val_size: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed train/val partition of range(n): (train indices, val indices), each sorted."""
    if val_size >= n:
        raise DatasetError(f"data.val_size {val_size} leaves no training images (the training set has {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def subsample(idx: torch.Tensor, k: int | None, seed: int) -> torch.Tensor:
    """k of the indices drawn by seed (all if k is None or too large), sorted."""
    if k is None or k >= len(idx):
        return idx
    pick = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))[:k]
    return idx[pick].sort().values


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], shaped (1, C, 1, 1)."""
    xf = x.float().div_(255.0)
    mean = xf.mean(dim=(0, 2, 3), keepdim=True)
    std = xf.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return mean, std


@dataclass(frozen=True)
class FixedSplit:
    """The part of load_splits no seed changes: the dataset, its train/val partition, its statistics."""

    raw: RawData
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


# The last fixed split this process read: trials of one dataset that follow each other in a reused
# worker skip reading and standardising it (one entry, so a worker holds at most one dataset).
_LAST_SPLIT: dict[tuple, FixedSplit] = {}


def _split_key(cfg: DataConfig) -> tuple | None:
    """What the fixed split depends on, files' sizes and times included; None if the files are not there yet."""
    info = dataset_info(cfg.name)
    settings = cfg.model_dump_json(exclude={"root", "train_subset", "augment", "download"})
    if not info.files:
        return (info.reader, settings)
    directory = find_dataset(cfg.name, cfg)
    if directory is None:
        return None
    files = sorted(p for p in directory.iterdir() if p.is_file())
    stats = tuple((p.name, st.st_size, st.st_mtime_ns) for p, st in zip(files, map(Path.stat, files)))
    return (info.reader, settings, str(directory), stats)


def _read_fixed_split(cfg: DataConfig) -> FixedSplit:
    info = dataset_info(cfg.name)
    raw = load_raw(cfg)
    n_total = raw.train_x.shape[0]
    n_split = raw.splittable or n_total
    train_idx, val_idx = split_indices(n_split, val_images(cfg, n_split), cfg.split_seed)
    if n_split < n_total:  # SVHN extra images only ever train, as in the paper
        train_idx = torch.cat([train_idx, torch.arange(n_split, n_total)])
    # Statistics of the fixed training split (capped for SVHN extra), the same for every seed.
    mean, std = channel_stats(raw.train_x[train_idx[:80_000]])
    if info.scale_only:
        mean, std = torch.zeros_like(mean), torch.ones_like(std)
    return FixedSplit(raw, train_idx, val_idx, mean, std)


def fixed_split(cfg: DataConfig) -> FixedSplit:
    """The dataset split as cfg fixes it, read once per process while consecutive calls ask for the same one."""
    key = _split_key(cfg)
    if key is not None and key in _LAST_SPLIT:
        return _LAST_SPLIT[key]
    split = _read_fixed_split(cfg)
    _LAST_SPLIT.clear()
    key = key or _split_key(cfg)  # files a download just brought
    if key is not None:
        _LAST_SPLIT[key] = split
    return split


def load_splits(cfg: DataConfig, seed: int, device: torch.device | str = "cpu") -> DataSplits:
    """Load, split (fixed by split_seed), subsample (by seed) and move the dataset to device.

    Every tensor returned is the trial's own, so a trial cannot change what the next trial of
    the same worker reads from the process's cached split: indexing copies, the rest is copied.
    """
    info = dataset_info(cfg.name)
    fixed = fixed_split(cfg)
    raw = fixed.raw
    train_idx = subsample(fixed.train_idx, cfg.train_subset, seed)
    to = lambda t: t.to(device)  # noqa: E731
    own = lambda t: t.to(device, copy=True)  # noqa: E731
    return DataSplits(
        train_x=to(raw.train_x[train_idx]), train_y=to(raw.train_y[train_idx]),
        val_x=to(raw.train_x[fixed.val_idx]), val_y=to(raw.train_y[fixed.val_idx]),
        test_x=own(raw.test_x), test_y=own(raw.test_y), mean=own(fixed.mean), std=own(fixed.std),
        classes=raw.classes, augment=augments(cfg),
        flip=info.flip,
    )
