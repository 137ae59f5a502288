"""What each dataset is, known without loading it or importing torch: shape, classes, splits, where its files live.

The readers that turn the files into tensors are in connectome/training/datasets.py (`READERS`,
keyed by `DatasetInfo.reader`); planning needs only this module.
"""
from __future__ import annotations

from dataclasses import dataclass

from connectome.errors import DatasetError, unknown_name
from connectome.training.config import DataConfig, TrialConfig

# SVHN's "extra" training images (data.svhn_extra).
SVHN_EXTRA = 531_131


@dataclass(frozen=True)
class DatasetInfo:
    """How to find, read and split one dataset."""

    # Subdirectories tried under each data root, in order ("" = the root itself).
    dirs: tuple[str, ...]
    # Files that must exist in a directory for it to hold the dataset.
    files: tuple[str, ...]
    # The file format: a key of connectome.training.datasets.READERS.
    reader: str
    # Training images held out for validation when DataConfig.val_size is None (-1: a tenth).
    val_size: int
    # Default of DataConfig.augment, and whether a horizontal flip preserves the label.
    augment: bool
    flip: bool
    # How a user gets the files (shown when they are missing).
    how_to_get: str
    # (C, H, W) of the images and the number of classes, known without loading anything.
    shape: tuple[int, int, int] = (0, 0, 0)
    classes: int = 0
    # Directories outside the data roots (system packages).
    system_dirs: tuple[str, ...] = ()
    # torchvision dataset class name used to download, and its subdirectory under the root.
    torchvision: str | None = None
    # Pixels / 255 only, no per-channel standardisation (the paper's SVHN preprocessing).
    scale_only: bool = False
    # Training-split images (before validation is held out; SVHN without extra), for estimates.
    train_images: int = 0
    # The training recipe (connectome/training/trainer.py RECIPES): image classification or language model.
    recipe: str = "images"
    # Dropout when arch.dropout is unset; None = decided by augmentation (connectome/training/plan.py).
    dropout: float | None = None


_IDX_FILES = tuple(f"{p}-{k}-ubyte.gz" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1"))
_PIP_TV = "let torchvision download it (data.download: true, needs network; saved under $CONNECTOME_DATA or ./data)"

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        shape=(3, 32, 32), classes=10, train_images=50000,
        dirs=("cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
        files=("data_batch_1", "data_batch_5", "test_batch"), reader="cifar10",
        val_size=5000, augment=True, flip=True, torchvision="CIFAR10",
        how_to_get="unpack cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) "
                   "into $CONNECTOME_DATA, or " + _PIP_TV),
    "cifar100": DatasetInfo(
        shape=(3, 32, 32), classes=100, train_images=50000,
        dirs=("cifar-100-python", "cifar100/cifar-100-python"), files=("train", "test"),
        reader="cifar100", val_size=5000, augment=True, flip=True, torchvision="CIFAR100",
        how_to_get="unpack cifar-100-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) "
                   "into $CONNECTOME_DATA, or " + _PIP_TV),
    # The paper trains SVHN without augmentation (and so with dropout 0.2), pixels / 255.
    "svhn": DatasetInfo(
        shape=(3, 32, 32), classes=10, train_images=73257,
        dirs=("svhn", ""), files=("train_32x32.mat", "test_32x32.mat"), reader="svhn",
        val_size=6000, augment=False, flip=False, torchvision="SVHN", scale_only=True,
        how_to_get="put train_32x32.mat and test_32x32.mat (http://ufldl.stanford.edu/housenumbers/) "
                   "in $CONNECTOME_DATA/svhn, or " + _PIP_TV),
    # No paper split: 5,000 of 60,000 held out, the classic MNIST validation size, like CIFAR's.
    "fashion-mnist": DatasetInfo(
        shape=(1, 28, 28), classes=10, train_images=60000,
        dirs=("fashion-mnist", "FashionMNIST/raw"), files=_IDX_FILES, reader="idx",
        val_size=5000, augment=True, flip=True, torchvision="FashionMNIST",
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        how_to_get="install the Debian package: sudo apt-get install dataset-fashion-mnist "
                   "(or `make data`), or put the four idx .gz files in $CONNECTOME_DATA/fashion-mnist"),
    # Digits: a mirror image is not the same digit, so crops only.
    "mnist": DatasetInfo(
        shape=(1, 28, 28), classes=10, train_images=60000,
        dirs=("mnist", "MNIST/raw"), files=_IDX_FILES, reader="idx",
        val_size=5000, augment=False, flip=False, torchvision="MNIST",
        how_to_get="put the four idx .gz files (train/t10k images/labels) in $CONNECTOME_DATA/mnist, "
                   "or " + _PIP_TV),
    # Tiny-ImageNet (Stanford CS231n): 200 classes of 64x64 colour images, 500 per class; its labelled
    # validation set (10,000) is the test split, as in RDNet's pilot and most reports (the test set has no labels).
    "tiny-imagenet": DatasetInfo(
        shape=(3, 64, 64), classes=200, train_images=100000,
        dirs=("tiny-imagenet-200", ""), files=("wnids.txt", "train", "val/val_annotations.txt"),
        reader="tiny-imagenet", val_size=10000, augment=True, flip=True,
        how_to_get="unzip tiny-imagenet-200.zip (http://cs231n.stanford.edu/tiny-imagenet-200.zip) into "
                   "$CONNECTOME_DATA (or data.root), giving tiny-imagenet-200/{wnids.txt,train,val}"),
    # Any UTF-8 file as bytes (data.path); by default the King James Bible (connectome/training/corpus.py).
    # A "class" is the next byte; one input is one token, so counts are per token.
    "text": DatasetInfo(
        shape=(1, 1, 1), classes=256, dirs=(), files=(), reader="text", val_size=0, augment=False, flip=False,
        recipe="lm", dropout=0.0, how_to_get="see connectome/training/corpus.py (KJV_HOW_TO_GET)"),
    "synthetic": DatasetInfo(
        dirs=(), files=(), reader="synthetic",
        val_size=-1, augment=False, flip=True, how_to_get="generated in code"),
}


def dataset_info(name: str) -> DatasetInfo:
    """Registry lookup; unknown names list the known ones."""
    if name not in DATASETS:
        raise DatasetError(unknown_name("dataset", name, DATASETS))
    return DATASETS[name]


def tokens_per_sample(cfg: TrialConfig) -> int | None:
    """Tokens in one training sample of a language model (its context window), None for images: progress shows tokens/s."""
    return cfg.arch.context if dataset_info(cfg.data.name).recipe == "lm" else None


def data_shape(cfg: DataConfig) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) of a dataset's images and its number of classes, without loading them."""
    if cfg.name == "synthetic":
        s = cfg.synthetic
        return (s.channels, s.size, s.size), s.classes
    info = dataset_info(cfg.name)
    return info.shape, info.classes


def augments(cfg: DataConfig) -> bool:
    """Whether training images are augmented: the config's choice, else the dataset's default."""
    return dataset_info(cfg.name).augment if cfg.augment is None else cfg.augment


def val_images(cfg: DataConfig, n_train: int) -> int:
    """The validation size: explicit, the dataset's paper split, or a tenth (synthetic data)."""
    if cfg.val_size is not None:
        return cfg.val_size
    size = dataset_info(cfg.name).val_size
    return n_train // 10 if size < 0 else size


def split_images(cfg: DataConfig) -> int:
    """Images of the training split that the validation set is drawn from (SVHN without extra)."""
    return cfg.synthetic.train if cfg.name == "synthetic" else dataset_info(cfg.name).train_images


def check_split(cfg: DataConfig) -> None:
    """DatasetError if the validation set would leave no training image (known without loading the data)."""
    if dataset_info(cfg.name).recipe != "images":
        return  # text splits are fractions, checked against the corpus (connectome/training/corpus.py)
    total = split_images(cfg)
    if total and val_images(cfg, total) >= total:
        raise DatasetError(f"data.val_size {val_images(cfg, total):,} leaves no training images: dataset "
                           f"{cfg.name!r} has {total:,} in its training split; use a smaller data.val_size")


def train_images(cfg: DataConfig) -> int:
    """Training images per epoch, known without loading the data."""
    total = split_images(cfg)
    val = val_images(cfg, total)
    if cfg.name == "svhn" and cfg.svhn_extra:
        total += SVHN_EXTRA
    n = max(total - val, 1)
    return min(n, cfg.train_subset) if cfg.train_subset else n
