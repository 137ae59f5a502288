"""Dataset registry: file lookup, readers, missing-data message, paper splits, subsampling."""
import dataclasses
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from connectome.errors import DatasetError
from connectome.training import datasets as ds
from connectome.training.catalog import val_images
from connectome.training.config import DataConfig, SyntheticConfig

FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def no_roots(tmp_path, monkeypatch):
    """Empty $CONNECTOME_DATA and ./data, so only explicit roots and system dirs are searched."""
    monkeypatch.setenv("CONNECTOME_DATA", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_idx_dataset(directory: Path, n_train: int = 60, n_test: int = 10) -> None:
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'.*cifar10.*fashion-mnist.*synthetic"):
        ds.load_raw(DataConfig(name="imagenet"))


IMAGE_FILES = sorted(n for n, info in ds.DATASETS.items() if info.recipe == "images" and info.files)


@pytest.mark.parametrize("name", IMAGE_FILES)
def test_missing_dataset_names_it_the_dirs_and_the_fix(name, no_roots, monkeypatch):
    monkeypatch.setitem(ds.DATASETS, name, dataclasses.replace(ds.DATASETS[name], system_dirs=()))
    with pytest.raises(DatasetError) as err:
        ds.load_raw(DataConfig(name=name, download=False))
    msg = str(err.value)
    assert f"dataset {name!r} not found" in msg
    assert str(no_roots / "env") in msg and str(no_roots / "data") in msg
    assert "To get it:" in msg and "\n" not in msg


def test_fashion_mnist_message_points_at_the_debian_package(no_roots, monkeypatch):
    monkeypatch.setitem(ds.DATASETS, "fashion-mnist",
                        dataclasses.replace(ds.DATASETS["fashion-mnist"], system_dirs=(str(no_roots / "sys"),)))
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist") as err:
        ds.load_raw(DataConfig(name="fashion-mnist", download=False))
    assert str(no_roots / "sys") in str(err.value)


def test_idx_reader_finds_connectome_data_first(no_roots, monkeypatch):
    _fake_idx_dataset(no_roots / "env" / "mnist")
    raw = ds.load_raw(DataConfig(name="mnist", download=False))
    assert raw.train_x.shape == (60, 1, 28, 28) and raw.train_x.dtype == torch.uint8
    assert raw.test_y.tolist() == list(range(10)) and raw.classes == 10


def test_explicit_root_wins_over_environment(no_roots):
    _fake_idx_dataset(no_roots / "env" / "mnist", n_train=60)
    _fake_idx_dataset(no_roots / "mine" / "mnist", n_train=30)
    raw = ds.load_raw(DataConfig(name="mnist", root=str(no_roots / "mine"), download=False))
    assert len(raw.train_y) == 30


def test_torchvision_layout_is_found(no_roots):
    _fake_idx_dataset(no_roots / "data" / "FashionMNIST" / "raw")
    assert ds.find_dataset("fashion-mnist", DataConfig(name="fashion-mnist")) == no_roots / "data" / "FashionMNIST" / "raw"


def test_cifar_reader(no_roots):
    d = no_roots / "env" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, n in [*[(f"data_batch_{i}", 4) for i in range(1, 6)], ("test_batch", 3)]:
        data = np.full((n, 3072), 7, dtype=np.uint8)
        data[:, 1024:2048] = 9  # green plane
        with open(d / name, "wb") as f:
            pickle.dump({"data": data, "labels": list(range(n))}, f)
    raw = ds.load_raw(DataConfig(name="cifar10", download=False))
    assert raw.train_x.shape == (20, 3, 32, 32) and raw.test_x.shape == (3, 3, 32, 32)
    assert raw.train_x[0, 1].unique().tolist() == [9] and raw.train_x[0, 0].unique().tolist() == [7]


@pytest.mark.skipif(not FASHION_SYSTEM.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_system_package(no_roots):
    splits = ds.load_splits(DataConfig(name="fashion-mnist", download=False), seed=0)
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (55_000, 5_000, 10_000)
    assert splits.input_size == (1, 28, 28) and splits.classes == 10 and splits.augment


@pytest.mark.parametrize("name,expected", [("cifar10", 5000), ("cifar100", 5000), ("svhn", 6000),
                                           ("fashion-mnist", 5000), ("mnist", 5000)])
def test_paper_validation_sizes(name, expected):
    assert val_images(DataConfig(name=name), 50_000) == expected
    assert val_images(DataConfig(name=name, val_size=0), 50_000) == 0


def test_split_is_disjoint_complete_and_fixed():
    train, val = ds.split_indices(100, 20, split_seed=0)
    assert len(val) == 20 and len(train) == 80
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    assert torch.equal(val, ds.split_indices(100, 20, split_seed=0)[1])
    assert not torch.equal(val, ds.split_indices(100, 20, split_seed=1)[1])


def test_split_needs_training_images():
    with pytest.raises(DatasetError, match="val_size 10 leaves no training images"):
        ds.split_indices(10, 10, 0)


def test_subsample_is_deterministic_by_seed():
    idx = torch.arange(1000)
    a, b, c = (ds.subsample(idx, 100, s) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(a) == 100 and len(set(a.tolist())) == 100
    assert torch.equal(ds.subsample(idx, None, 0), idx)


def test_splits_val_fixed_across_seeds_train_subsampled_by_seed():
    cfg = DataConfig(name="synthetic", train_subset=50, synthetic=SyntheticConfig(train=200, test=20, size=8))
    s0, s0b, s1 = ds.load_splits(cfg, seed=0), ds.load_splits(cfg, seed=0), ds.load_splits(cfg, seed=1)
    assert len(s0.val_y) == 20 and len(s0.train_y) == 50
    assert torch.equal(s0.val_x, s1.val_x)
    assert torch.equal(s0.train_x, s0b.train_x) and not torch.equal(s0.train_x, s1.train_x)


def test_normalised_batches_are_standardised():
    cfg = DataConfig(name="synthetic", augment=False, synthetic=SyntheticConfig(train=500, size=8, channels=3))
    splits = ds.load_splits(cfg, seed=0)
    x, y = splits.batch(torch.arange(len(splits.train_y)), torch.Generator())
    assert x.dtype == torch.float32 and x.shape == (450, 3, 8, 8) and torch.equal(y, splits.train_y)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)


def test_grayscale_synthetic_and_augmented_batches():
    cfg = DataConfig(name="synthetic", augment=True, synthetic=SyntheticConfig(train=100, size=8, channels=1))
    splits = ds.load_splits(cfg, seed=0)
    x, _ = splits.batch(torch.arange(10), torch.Generator().manual_seed(0))
    assert splits.input_size == (1, 8, 8) and x.shape == (10, 1, 8, 8)
    assert not torch.equal(x, splits.normalize(splits.train_x[:10]))


def test_synthetic_is_the_same_for_every_trial():
    a, b = ds.make_synthetic(SyntheticConfig()), ds.make_synthetic(SyntheticConfig())
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert len(a.train_y.unique()) == 10


class _RunsCode:
    """Unpickling this calls os.system: what a crafted CIFAR batch would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def _cifar10_dir(root: Path, batch) -> Path:
    """A cifar-10-batches-py folder whose six files all hold `batch` (a dict or any object)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    return d


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_reader_reads_the_genuine_layout(no_roots, protocol):
    # as the real files: bytes keys, batch_label, filenames, numpy data (numpy 2 pickles it)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [3, 1],
             b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), b"filenames": [b"a.png", b"b.png"]}
    d = no_roots / "env" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (d / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    raw = ds.load_raw(DataConfig(name="cifar10", download=False))
    assert raw.train_x.shape == (10, 3, 32, 32) and raw.train_y.tolist()[:2] == [3, 1]
    assert torch.equal(raw.test_x[1].flatten(), torch.from_numpy(batch[b"data"][1]))


def test_cifar_numpy1_pickle_is_read(no_roots):
    # Pickles written under numpy 1 name numpy.core.multiarray._reconstruct.
    blob = pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}, protocol=2)
    blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in blob
    batch = pickle.loads(blob)  # noqa: S301 - our own bytes, checked to be loadable at all
    d = _cifar10_dir(no_roots / "env", batch)
    for f in d.iterdir():
        f.write_bytes(blob)
    assert ds.load_raw(DataConfig(name="cifar10", download=False)).train_x.shape == (5, 3, 32, 32)


def test_crafted_cifar_pickle_runs_no_code(no_roots):
    marker = no_roots / "pwned"
    _cifar10_dir(no_roots / "data", _RunsCode(marker))
    with pytest.raises(DatasetError, match=r"data_batch_1 is not a CIFAR python batch: refers to posix.system") as err:
        ds.load_raw(DataConfig(name="cifar10", download=False))
    assert not marker.exists() and "\n" not in str(err.value)


@pytest.mark.parametrize("batch", [["not", "a", "dict"], {"data": np.zeros((2, 5), np.uint8), "labels": [0, 1]},
                                   {"data": np.zeros((2, 3072), np.uint8), "labels": [0]}])
def test_cifar_file_of_the_wrong_shape_is_a_dataset_error(no_roots, batch):
    _cifar10_dir(no_roots / "env", batch)
    with pytest.raises(DatasetError, match="expected a dict with uint8 `data`"):
        ds.load_raw(DataConfig(name="cifar10", download=False))


def test_truncated_cifar_file_is_a_dataset_error(no_roots):
    d = _cifar10_dir(no_roots / "env", {"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
    (d / "data_batch_1").write_bytes((d / "data_batch_1").read_bytes()[:100])
    with pytest.raises(DatasetError, match="data_batch_1 is not a CIFAR python batch"):
        ds.load_raw(DataConfig(name="cifar10", download=False))


@pytest.mark.parametrize("blob", [b"", b"\x00\x00\x08\x03" + struct.pack(">III", 10**6, 28, 28) + b"\x00" * 50,
                                  b"\x00\x00\x0d\x01" + struct.pack(">I", 4) + b"\x00" * 16])
def test_bad_idx_file_is_a_dataset_error(no_roots, blob):
    _fake_idx_dataset(no_roots / "env" / "mnist")
    with gzip.open(no_roots / "env" / "mnist" / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(blob)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz is not an idx file"):
        ds.load_raw(DataConfig(name="mnist", download=False))


@pytest.mark.parametrize("content", [b"not a mat file at all", None])
def test_bad_svhn_file_is_a_dataset_error(no_roots, content):
    from scipy.io import savemat

    d = no_roots / "env" / "svhn"
    d.mkdir(parents=True)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        if content is None:  # a real .mat file without the X and y arrays
            savemat(d / name, {"images": np.zeros((2, 2))})
        else:
            (d / name).write_bytes(content)
    with pytest.raises(DatasetError, match="train_32x32.mat is not an SVHN .mat file") as err:
        ds.load_raw(DataConfig(name="svhn", download=False))
    assert "\n" not in str(err.value)


def test_svhn_is_scaled_by_255_only(monkeypatch):
    """The paper divides SVHN pixels by 255 and does not standardise them."""
    assert ds.DATASETS["svhn"].scale_only and not ds.DATASETS["cifar10"].scale_only
    monkeypatch.setitem(ds.DATASETS, "synthetic", dataclasses.replace(ds.DATASETS["synthetic"], scale_only=True))
    splits = ds.load_splits(DataConfig(name="synthetic", synthetic=SyntheticConfig(train=100, size=8)), seed=0)
    x, _ = splits.batch(torch.arange(10), torch.Generator())
    assert torch.equal(x, splits.train_x[:10].float() / 255.0)


@pytest.fixture
def counted_reads(monkeypatch):
    """How often the idx reader ran, with a fresh split cache."""
    monkeypatch.setattr(ds, "_LAST_SPLIT", {})
    calls = []
    real = ds._read_idx

    def counting(directory, cfg):
        calls.append(directory)
        return real(directory, cfg)

    monkeypatch.setitem(ds.READERS, "idx", counting)
    return calls


def test_consecutive_trials_of_one_dataset_read_it_once(no_roots, counted_reads):
    _fake_idx_dataset(no_roots / "env" / "mnist")
    cfg = DataConfig(name="mnist", val_size=10, train_subset=20, download=False)
    a, b, c = ds.load_splits(cfg, seed=0), ds.load_splits(cfg, seed=0), ds.load_splits(cfg.model_copy(update={"train_subset": 30}), seed=1)
    assert len(counted_reads) == 1  # seed and subset are drawn from the cached split
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_x, c.val_x) and len(c.train_y) == 30
    a.test_x.zero_(), a.test_y.zero_(), a.train_x.zero_(), a.val_x.zero_(), a.mean.zero_(), a.std.zero_()  # a trial's tensors are its own
    d = ds.load_splits(cfg, seed=0)
    for field in ("train_x", "val_x", "test_x", "test_y", "mean", "std"):
        assert torch.equal(getattr(d, field), getattr(b, field)) and getattr(d, field).any(), field
    assert len(counted_reads) == 1


def test_a_changed_split_or_changed_files_are_read_again(no_roots, counted_reads):
    _fake_idx_dataset(no_roots / "env" / "mnist", n_train=60)
    cfg = DataConfig(name="mnist", val_size=10, download=False)
    ds.load_splits(cfg, seed=0)
    ds.load_splits(cfg.model_copy(update={"split_seed": 1}), seed=0)
    assert len(counted_reads) == 2
    ds.load_splits(cfg, seed=0)
    assert len(counted_reads) == 3  # one split is kept per process
    (no_roots / "env" / "mnist").rename(no_roots / "env" / "old")
    _fake_idx_dataset(no_roots / "env" / "mnist", n_train=40)
    assert len(ds.load_splits(cfg, seed=0).train_y) == 30 and len(counted_reads) == 4
    _write_idx(no_roots / "env" / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(10))
    assert ds.load_splits(cfg, seed=0).test_y.tolist() == [0] * 10 and len(counted_reads) == 5


def _fake_tiny_imagenet(root, per_class=3):
    """A Tiny-ImageNet folder of two classes with a few 64x64 JPEGs each."""
    from PIL import Image

    wnids = ["n001", "n002"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rows = []
    for i, w in enumerate(wnids):
        (root / "train" / w / "images").mkdir(parents=True)
        for j in range(per_class):
            Image.new("RGB", (64, 64), (40 * i, 10 * j, 0)).save(root / "train" / w / "images" / f"{w}_{j}.JPEG")
        Image.new("L", (64, 64), 100).save(root / "val" / "images" / f"val_{i}.JPEG")
        rows.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")


def test_tiny_imagenet_reads_its_folders_with_val_as_the_test_split(no_roots):
    _fake_tiny_imagenet(no_roots / "env" / "tiny-imagenet-200")
    raw = ds.load_raw(DataConfig(name="tiny-imagenet", download=False))
    assert raw.train_x.shape == (6, 3, 64, 64) and raw.train_x.dtype == torch.uint8
    assert raw.train_y.tolist() == [0, 0, 0, 1, 1, 1] and raw.test_y.tolist() == [0, 1] and raw.classes == 2
    assert raw.test_x.shape == (2, 3, 64, 64)  # a grayscale JPEG comes back as RGB


def test_tiny_imagenet_cannot_be_downloaded_and_says_how_to_get_it(no_roots):
    with pytest.raises(DatasetError, match=r"connectome cannot download it\. To get it: unzip tiny-imagenet-200"):
        ds.load_raw(DataConfig(name="tiny-imagenet"))
