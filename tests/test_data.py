"""Tests of sinreq.data on small files generated in the real on-disk formats (no network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from sinreq.data import (
    DATASETS,
    DatasetError,
    Splits,
    build_splits,
    checksums,
    download,
    fetch,
    make_loaders,
    readers,
)

CIFAR_PER_BATCH = 20  # 5 training batches -> 100 training images
CIFAR_TEST = 20
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
CIFAR_CLASSES += ["dog", "frog", "horse", "ship", "truck"]
SVHN_TRAIN = 30
SVHN_TEST = 12
FASHION_TRAIN = 30
FASHION_TEST = 10
FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach the network (torchvision downloads use urllib) fails loudly."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(autouse=True)
def no_debian_package(monkeypatch, tmp_path):
    """Tests never see a Debian dataset-fashion-mnist installed on the machine."""
    monkeypatch.setattr(fetch, "_FASHION_DEBIAN", tmp_path / "no-debian-package")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def normalised(pixels: np.ndarray, mean: float = 0.5, std: float = 0.5) -> np.ndarray:
    return (pixels.astype(np.float64) / 255.0 - mean) / std


def ident(image: torch.Tensor) -> int:
    """Recover the id written into pixels (0, 0, 0) and (0, 0, 1) of a 0.5/0.5-normalised image."""
    low, high = ((image[0, 0, :2].double() * 0.5 + 0.5) * 255).round().long().tolist()
    return low + 256 * high


def ids(dataset) -> list[int]:
    return [ident(dataset[i][0]) for i in range(len(dataset))]


def write_cifar(root: Path) -> dict[str, np.ndarray]:
    """CIFAR-10 python batches and label names; image k carries id k in its first two red pixels,
    label k % 10. The keys are str, as torchvision reads the real Python 2 pickles (latin1)."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    sizes = [(f"data_batch_{i}", CIFAR_PER_BATCH) for i in range(1, 6)] + [
        ("test_batch", CIFAR_TEST)
    ]
    first = 0
    for name, n in sizes:
        numbers = np.arange(first, first + n)
        first += n
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        pixels[:, 0] = numbers % 256
        pixels[:, 1] = numbers // 256
        pixels[:, 3071] = 51  # blue, row 31, column 31: a known value, 0.2 of full scale
        batch = {
            "batch_label": name,
            "labels": [int(k % 10) for k in numbers],
            "data": pixels,
            "filenames": [f"img_{k}.png" for k in numbers],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = pixels
    meta = {"num_cases_per_batch": CIFAR_PER_BATCH, "label_names": CIFAR_CLASSES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def trust_cifar(monkeypatch, root: Path) -> None:
    """Make torchvision's published CIFAR-10 MD5 table describe the generated files."""
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    train = [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
    monkeypatch.setattr(CIFAR10, "train_list", train)
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    meta = {**CIFAR10.meta, "md5": md5(folder / CIFAR10.meta["filename"])}
    monkeypatch.setattr(CIFAR10, "meta", meta)


def write_svhn(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """SVHN .mat files; image k carries id k in its first two red pixels, digit k % 10."""
    import scipy.io

    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    first = 0
    for name, n in (("train_32x32.mat", SVHN_TRAIN), ("test_32x32.mat", SVHN_TEST)):
        numbers = np.arange(first, first + n)
        first += n
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        x[0, 0, 0, :] = numbers % 256
        x[0, 1, 0, :] = numbers // 256
        digits = numbers % 10
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(root / name, {"X": x, "y": y})
        written[name] = (x, y)
    return written


def trust_svhn(monkeypatch, root: Path) -> None:
    """Make torchvision's published SVHN MD5 table describe the generated files."""
    from torchvision.datasets import SVHN

    table = {split: list(entry) for split, entry in SVHN.split_list.items()}
    for split in ("train", "test"):
        table[split][2] = md5(root / table[split][1])
    monkeypatch.setattr(SVHN, "split_list", table)


def idx(array: np.ndarray) -> bytes:
    """The IDX format: big-endian magic (2051 images, 2049 labels) and dimensions, uint8 data."""
    magic = {3: 2051, 1: 2049}[array.ndim]
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def fashion_arrays() -> dict[str, np.ndarray]:
    """IDX file name -> content. Image k (train 0..29, then test) is random with a white 1-pixel
    frame and its id k in pixels (14, 14) and (14, 15); labels are random in 0..9."""
    rng = np.random.default_rng(3)
    arrays = {}
    first = 0
    for split, n in (("train", FASHION_TRAIN), ("t10k", FASHION_TEST)):
        numbers = np.arange(first, first + n)
        first += n
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, [0, -1], :] = 255
        images[:, :, [0, -1]] = 255
        images[:, 14, 14] = numbers % 256
        images[:, 14, 15] = numbers // 256
        arrays[f"{split}-images-idx3-ubyte"] = images
        arrays[f"{split}-labels-idx1-ubyte"] = rng.integers(0, 10, size=n, dtype=np.uint8)
    return arrays


def write_fashion_gz(source: Path, arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """The four gzipped IDX files, as Debian ships them; returns the decompressed contents."""
    source.mkdir(parents=True, exist_ok=True)
    contents = {name: idx(array) for name, array in arrays.items()}
    for name, content in contents.items():
        (source / f"{name}.gz").write_bytes(gzip.compress(content))
    return contents


def trust_fashion(monkeypatch, contents: dict[str, bytes]) -> None:
    """Make the published Fashion-MNIST MD5 table describe the generated files."""
    table = {name: hashlib.md5(contents[name]).hexdigest() for name in FASHION_FILES}
    monkeypatch.setattr(checksums, "_FASHION_MD5", table)


@pytest.fixture
def fashion(tmp_path, monkeypatch) -> tuple[Path, dict[str, np.ndarray], dict[str, bytes]]:
    """(source folder of trusted generated .gz files, their arrays, their decompressed bytes)."""
    arrays = fashion_arrays()
    contents = write_fashion_gz(tmp_path / "gz", arrays)
    trust_fashion(monkeypatch, contents)
    return tmp_path / "gz", arrays, contents


def fashion_ident(image: torch.Tensor) -> int:
    """The id of a padded, normalised Fashion-MNIST image: raw pixels (14, 14) and (14, 15)."""
    low, high = ((image[0, 16, 16:18].double() * 0.5 + 0.5) * 255).round().long().tolist()
    return low + 256 * high


def write_imagenet(root: Path, names=("n01", "n02", "n03", "n04"), per_class=5, val=2) -> None:
    """ImageFolder tree: random JPEG training images, solid-colour PNG validation images."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for c, name in enumerate(names):
        (root / "train" / name).mkdir(parents=True)
        (root / "val" / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "train" / name / f"{name}_{i}.JPEG", quality=95)
        for i in range(val):
            colour = (10 + 60 * c, 200 - 40 * c, 100 + i)
            Image.new("RGB", (50, 40), colour).save(root / "val" / name / f"val_{i}.png")
    # the last validation image: grey 256x256 with a 16-pixel red frame, which
    # Resize(256) + CenterCrop(224) removes exactly
    framed = np.full((256, 256, 3), 128, dtype=np.uint8)
    framed[:16], framed[-16:], framed[:, :16], framed[:, -16:] = 255, 255, 255, 255
    Image.fromarray(framed).save(root / "val" / names[-1] / f"val_{val - 1}.png")


def assert_one_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


@pytest.fixture(scope="module")
def digits() -> Splits:
    return build_splits("digits", "unused")


# ----------------------------------------------------------------------------- names and arguments


@pytest.mark.parametrize("call", [build_splits, download])
def test_unknown_name_lists_the_choices(call, tmp_path):
    with pytest.raises(DatasetError) as err:
        call("mnist", tmp_path)
    assert isinstance(err.value, ValueError)
    assert str(err.value) == "unknown dataset 'mnist'; choose one of: " + ", ".join(DATASETS)
    assert DATASETS == ("digits", "cifar10", "svhn", "fashion_mnist", "imagenet")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_val_fraction_must_leave_both_parts(fraction):
    with pytest.raises(DatasetError, match="val_fraction"):
        build_splits("digits", "unused", val_fraction=fraction)


# ----------------------------------------------------------------------------- digits


def test_digits_sizes_shapes_and_classes(digits):
    sizes = [len(digits.train), len(digits.val), len(digits.test)]
    assert sum(sizes) == 1797
    assert sizes[2] == round(0.2 * 1797)
    assert sizes[1] == round(0.1 * (1797 - sizes[2]))
    assert (digits.num_classes, digits.image_size) == (10, 32)
    for split in (digits.train, digits.val, digits.test):
        images, labels = split.tensors
        assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.float32
        assert labels.dtype == torch.int64
        assert set(labels.tolist()) == set(range(10))
        assert images.min() >= -1 and images.max() <= 1
        assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])


def test_digits_match_an_independent_resize_of_sklearn_images(digits):
    from PIL import Image
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = torch.cat([s.tensors[0] for s in (digits.train, digits.val, digits.test)])
    labels = torch.cat([s.tensors[1] for s in (digits.train, digits.val, digits.test)])
    for k in (0, 1000):
        small = (raw.images[k] / 16.0).astype(np.float32)
        big = np.asarray(Image.fromarray(small).resize((32, 32), Image.Resampling.BILINEAR))
        expected = torch.from_numpy((big - 0.5) / 0.5)
        close = (images[:, 0] - expected).abs().flatten(1).max(dim=1).values < 1e-5
        matches = close.nonzero().flatten().tolist()
        assert len(matches) == 1
        assert labels[matches[0]] == raw.target[k]


def test_digits_splits_partition_the_data(digits):
    from sklearn.datasets import load_digits

    assert len(np.unique(load_digits().data, axis=0)) == 1797  # every raw image is distinct
    images = torch.cat([s.tensors[0] for s in (digits.train, digits.val, digits.test)])
    assert len(torch.unique(images.flatten(1), dim=0)) == 1797


def test_digits_split_is_a_pure_function_of_split_seed(digits):
    again = build_splits("digits", "elsewhere")
    other = build_splits("digits", "unused", split_seed=1)
    for split in ("train", "val", "test"):
        for a, b in zip(getattr(digits, split).tensors, getattr(again, split).tensors, strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(digits.val.tensors[0], other.val.tensors[0])
    # the test split is fixed, like the real datasets' test sets
    assert torch.equal(digits.test.tensors[0], other.test.tensors[0])


def test_digits_class_subset():
    splits = build_splits("digits", "unused", classes=3)
    assert splits.num_classes == 3
    for split in (splits.train, splits.val, splits.test):
        assert set(split.tensors[1].tolist()) == {0, 1, 2}
    with pytest.raises(DatasetError, match="classes=11"):
        build_splits("digits", "unused", classes=11)


# ----------------------------------------------------------------------------- CIFAR-10


def test_cifar_loader_reads_the_python_batches(tmp_path, monkeypatch):
    written = write_cifar(tmp_path)
    trust_cifar(monkeypatch, tmp_path)
    arrays = readers.load_cifar10(tmp_path)
    assert arrays.train_images.shape == (5 * CIFAR_PER_BATCH, 3, 32, 32)
    assert arrays.train_images.dtype == torch.uint8 and arrays.train_labels.dtype == torch.int64
    assert arrays.test_images.shape == (CIFAR_TEST, 3, 32, 32)
    assert arrays.train_labels.tolist() == [k % 10 for k in range(5 * CIFAR_PER_BATCH)]
    # image 25 is row 5 of data_batch_2; its green plane starts at byte 1024, row-major
    row = written["data_batch_2"][5]
    assert arrays.train_images[25, 1, 3, 7] == row[1024 + 3 * 32 + 7]
    assert arrays.train_images[25, 2, 31, 0] == row[2048 + 31 * 32]
    assert arrays.train_images.is_contiguous() and arrays.test_images.is_contiguous()
    assert arrays.test_labels.tolist() == [k % 10 for k in range(100, 100 + CIFAR_TEST)]


def test_cifar_splits_end_to_end(tmp_path, monkeypatch):
    written = write_cifar(tmp_path)
    trust_cifar(monkeypatch, tmp_path)
    splits = build_splits("cifar10", tmp_path, val_fraction=0.2, augment=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, CIFAR_TEST)
    assert (splits.num_classes, splits.image_size) == (10, 32)
    train_ids, val_ids = ids(splits.train), ids(splits.val)
    assert set(train_ids).isdisjoint(val_ids)
    assert sorted(train_ids + val_ids) == list(range(100))
    assert ids(splits.test) == list(range(100, 100 + CIFAR_TEST))
    image, label = splits.test[3]
    assert image.dtype == torch.float32 and label == 103 % 10
    expected = normalised(written["test_batch"][3].reshape(3, 32, 32))
    np.testing.assert_allclose(image.numpy(), expected, atol=1e-6)
    # pixel value 51 is 0.2 of full scale: (0.2 - 0.5) / 0.5 = -0.6 in every split
    for split in (splits.train, splits.val, splits.test):
        assert split[0][0][2, 31, 31].item() == pytest.approx(-0.6, abs=1e-6)


def test_cifar_split_depends_only_on_split_seed(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    trust_cifar(monkeypatch, tmp_path)
    first = ids(build_splits("cifar10", tmp_path, split_seed=3).val)
    assert first == ids(build_splits("cifar10", tmp_path, split_seed=3).val)
    assert first != ids(build_splits("cifar10", tmp_path, split_seed=4).val)


def test_cifar_augments_the_train_split_only(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    trust_cifar(monkeypatch, tmp_path)
    plain = build_splits("cifar10", tmp_path, augment=False)
    augmented = build_splits("cifar10", tmp_path)
    # every augmented draw must be a 32x32 window of the image padded by 4 black (-1) pixels,
    # possibly mirrored; over 16 draws both shifted windows and mirrored ones must occur
    padded = torch.nn.functional.pad(plain.train[0][0], (4, 4, 4, 4), value=-1.0)
    windows = {
        (top, left, mirrored): window.flip(-1) if mirrored else window
        for top in range(9)
        for left in range(9)
        for mirrored in (False, True)
        for window in [padded[:, top : top + 32, left : left + 32]]
    }
    torch.manual_seed(0)
    seen = set()
    for _ in range(16):
        draw = augmented.train[0][0]
        matches = {kind for kind, window in windows.items() if torch.equal(draw, window)}
        assert matches, "an augmented image is not a padded crop of the original"
        seen |= matches
    assert any(mirrored for _, _, mirrored in seen)
    assert any(not mirrored for _, _, mirrored in seen)
    assert any((top, left) != (4, 4) for top, left, _ in seen)
    assert torch.equal(plain.train[0][0], plain.train[0][0])
    for split in ("val", "test"):
        a, b = getattr(augmented, split), getattr(plain, split)
        assert torch.equal(a[0][0], b[0][0]) and torch.equal(a[0][0], a[0][0])


def test_cifar_generated_files_fail_the_real_checksums(tmp_path):
    write_cifar(tmp_path)
    with pytest.raises(DatasetError) as err:
        build_splits("cifar10", tmp_path)
    assert_one_line(
        err,
        f"CIFAR-10 files in {tmp_path / 'cifar-10-batches-py'} are missing or corrupt",
        "checksum mismatch: data_batch_1, data_batch_2",
        f"run: sinreq download cifar10 --root {tmp_path}",
    )


def test_cifar_truncated_and_missing_files_are_rejected(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    trust_cifar(monkeypatch, tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    (folder / "test_batch").unlink()
    (folder / "batches.meta").unlink()
    with pytest.raises(DatasetError) as err:
        build_splits("cifar10", tmp_path)
    assert_one_line(
        err,
        "(missing: test_batch, batches.meta; checksum mismatch: data_batch_3)",
        f"run: sinreq download cifar10 --root {tmp_path}",
    )


def test_cifar_missing_folder(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_splits("cifar10", tmp_path / "nowhere")
    assert_one_line(
        err,
        f"{tmp_path / 'nowhere' / 'cifar-10-batches-py'} does not exist",
        f"run: sinreq download cifar10 --root {tmp_path / 'nowhere'}",
    )


class Payload:
    """Unpickling this creates the folder ``marker``: stands for code run by a hostile pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("batch", ["data_batch_4", "batches.meta"])
def test_cifar_pickles_are_never_opened_before_their_checksums_pass(tmp_path, monkeypatch, batch):
    write_cifar(tmp_path)
    trust_cifar(monkeypatch, tmp_path)
    marker = tmp_path / "payload-ran"
    hostile = pickle.dumps(Payload(marker))
    pickle.loads(hostile)  # the payload works when unpickled
    marker.rmdir()
    (tmp_path / "cifar-10-batches-py" / batch).write_bytes(hostile)
    with pytest.raises(DatasetError) as err:
        readers.load_cifar10(tmp_path)
    assert_one_line(err, f"checksum mismatch: {batch})", "run: sinreq download cifar10")
    assert not marker.exists()


# ----------------------------------------------------------------------------- SVHN


def test_svhn_loader_maps_label_10_to_0_and_keeps_the_layout(tmp_path, monkeypatch):
    written = write_svhn(tmp_path)
    trust_svhn(monkeypatch, tmp_path)
    arrays = readers.load_svhn(tmp_path)
    assert arrays.train_images.shape == (SVHN_TRAIN, 3, 32, 32)
    assert arrays.train_images.dtype == torch.uint8 and arrays.train_labels.dtype == torch.int64
    assert arrays.test_images.shape == (SVHN_TEST, 3, 32, 32)
    x, y = written["train_32x32.mat"]
    assert 10 in y and 0 not in y
    assert arrays.train_labels.tolist() == [k % 10 for k in range(SVHN_TRAIN)]
    assert arrays.train_labels[10] == 0 and y[10, 0] == 10
    # X is (row, column, channel, image)
    assert arrays.train_images[7, 2, 5, 9] == x[5, 9, 2, 7]
    assert arrays.train_images.is_contiguous() and arrays.test_images.is_contiguous()
    assert arrays.test_labels.tolist() == [
        k % 10 for k in range(SVHN_TRAIN, SVHN_TRAIN + SVHN_TEST)
    ]


def test_svhn_splits_end_to_end(tmp_path, monkeypatch):
    written = write_svhn(tmp_path)
    trust_svhn(monkeypatch, tmp_path)
    splits = build_splits("svhn", tmp_path, val_fraction=0.2, augment=True)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, SVHN_TEST)
    assert (splits.num_classes, splits.image_size) == (10, 32)
    train_ids, val_ids = ids(splits.train), ids(splits.val)
    assert sorted(train_ids + val_ids) == list(range(SVHN_TRAIN))
    assert ids(splits.test) == list(range(SVHN_TRAIN, SVHN_TRAIN + SVHN_TEST))
    x, _ = written["train_32x32.mat"]
    k = train_ids[0]
    image, label = splits.train[0]
    assert label == k % 10
    np.testing.assert_allclose(image.numpy(), normalised(x[..., k].transpose(2, 0, 1)), atol=1e-6)
    assert torch.equal(splits.train[0][0], image)  # no augmentation for SVHN, even if asked


def test_svhn_generated_files_fail_the_real_checksums(tmp_path):
    write_svhn(tmp_path)
    with pytest.raises(DatasetError) as err:
        build_splits("svhn", tmp_path)
    assert_one_line(
        err,
        "checksum mismatch: train_32x32.mat, test_32x32.mat",
        f"run: sinreq download svhn --root {tmp_path}",
    )


def test_svhn_missing_files(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_splits("svhn", tmp_path)
    assert_one_line(
        err, "missing: train_32x32.mat, test_32x32.mat", f"sinreq download svhn --root {tmp_path}"
    )


def test_svhn_tampered_file_is_rejected_before_it_is_read(tmp_path, monkeypatch):
    import scipy.io

    write_svhn(tmp_path)
    trust_svhn(monkeypatch, tmp_path)
    x = np.zeros((32, 32, 3, 2), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[3], [11]])})

    loadmat = scipy.io.loadmat

    def refuse_tampered(path, *args, **kwargs):
        assert Path(path).name != "test_32x32.mat", "the tampered file was read"
        return loadmat(path, *args, **kwargs)

    monkeypatch.setattr(scipy.io, "loadmat", refuse_tampered)
    with pytest.raises(DatasetError) as err:
        readers.load_svhn(tmp_path)
    assert_one_line(
        err, "(checksum mismatch: test_32x32.mat)", f"sinreq download svhn --root {tmp_path}"
    )


# ----------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_import_pads_replicates_and_keeps_labels(tmp_path, fashion):
    source, arrays, contents = fashion
    root = tmp_path / "data"
    raw = root / "FashionMNIST" / "raw"
    assert download("fashion_mnist", root, source=source) == raw
    assert sorted(p.name for p in raw.iterdir()) == sorted(FASHION_FILES)  # no temporary left
    for name in FASHION_FILES:
        assert (raw / name).read_bytes() == contents[name]
    splits = build_splits("fashion_mnist", root, val_fraction=0.2, split_seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, FASHION_TEST)
    assert (splits.num_classes, splits.image_size) == (10, 32)
    train_ids = [fashion_ident(splits.train[i][0]) for i in range(len(splits.train))]
    val_ids = [fashion_ident(splits.val[i][0]) for i in range(len(splits.val))]
    test_ids = [fashion_ident(splits.test[i][0]) for i in range(len(splits.test))]
    assert set(train_ids).isdisjoint(val_ids)
    assert sorted(train_ids + val_ids) == list(range(FASHION_TRAIN))
    assert test_ids == list(range(FASHION_TRAIN, FASHION_TRAIN + FASHION_TEST))
    for split, split_ids in ((splits.train, train_ids), (splits.val, val_ids)):
        for i, k in enumerate(split_ids):
            image, label = split[i]
            raw_image = arrays["train-images-idx3-ubyte"][k]
            assert label == arrays["train-labels-idx1-ubyte"][k]
            padded = np.zeros((32, 32), dtype=np.uint8)
            padded[2:30, 2:30] = raw_image
            expected = normalised(np.stack([padded] * 3))
            assert image.shape == (3, 32, 32) and image.dtype == torch.float32
            np.testing.assert_allclose(image.numpy(), expected, atol=1e-6)
    test_labels = [splits.test[i][1] for i in range(FASHION_TEST)]
    assert test_labels == arrays["t10k-labels-idx1-ubyte"].tolist()
    for split in (splits.train, splits.val, splits.test):
        image = split[0][0]
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
        pixels = ((image * 0.5 + 0.5) * 255).round()
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert pixels[:, border].abs().max() == 0  # 2-pixel black padding
        assert pixels[:, 2, 2:30].min() == 255 and pixels[:, 2:30, 29].min() == 255  # raw frame
    assert torch.equal(splits.train[0][0], splits.train[0][0])  # never augmented


def test_fashion_generated_files_fail_the_real_checksums(tmp_path):
    contents = write_fashion_gz(tmp_path / "gz", fashion_arrays())
    with pytest.raises(DatasetError) as err:
        download("fashion_mnist", tmp_path / "data", source=tmp_path / "gz")
    assert_one_line(err, str(tmp_path / "gz" / "train-images-idx3-ubyte.gz"), "corrupt")
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert list(raw.iterdir()) == []
    for name, content in contents.items():  # placed by hand: build_splits still refuses them
        (raw / name).write_bytes(content)
    with pytest.raises(DatasetError) as err:
        build_splits("fashion_mnist", tmp_path / "data")
    assert_one_line(
        err, "checksum mismatch: " + ", ".join(FASHION_FILES), "sinreq download fashion_mnist"
    )


@pytest.mark.parametrize("where", ["content", "gz stream"])
def test_fashion_import_rejects_a_flipped_byte(tmp_path, fashion, where):
    source, _, contents = fashion
    name = "t10k-images-idx3-ubyte"
    if where == "content":
        flipped = bytearray(contents[name])
        flipped[500] ^= 0x01
        (source / f"{name}.gz").write_bytes(gzip.compress(bytes(flipped)))
    else:
        packed = bytearray((source / f"{name}.gz").read_bytes())
        packed[len(packed) // 2] ^= 0x01
        (source / f"{name}.gz").write_bytes(bytes(packed))
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as err:
        download("fashion_mnist", root, source=source)
    assert_one_line(err, str(source / f"{name}.gz"))
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]
    with pytest.raises(DatasetError) as err:
        build_splits("fashion_mnist", root)
    assert_one_line(err, "missing: t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte")


def test_fashion_import_missing_source_files(tmp_path, fashion):
    source, _, _ = fashion
    (source / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as err:
        download("fashion_mnist", tmp_path / "data", source=source)
    assert_one_line(err, f"missing in {source}: train-labels-idx1-ubyte.gz;")
    assert not (tmp_path / "data" / "FashionMNIST").exists()
    with pytest.raises(DatasetError) as err:
        download("fashion_mnist", tmp_path / "data", source=tmp_path / "nowhere")
    assert_one_line(err, str(tmp_path / "nowhere"), *(f"{name}.gz" for name in FASHION_FILES))


def test_fashion_reads_the_verified_raw_files_not_a_legacy_cache(tmp_path, fashion):
    source, arrays, _ = fashion
    root = tmp_path / "data"
    download("fashion_mnist", root, source=source)
    # torchvision.datasets.FashionMNIST would read these unverified files instead of raw/
    processed = root / "FashionMNIST" / "processed"
    processed.mkdir()
    for name in ("training.pt", "test.pt"):
        torch.save((torch.zeros(5, 28, 28, dtype=torch.uint8), torch.zeros(5)), processed / name)
    splits = build_splits("fashion_mnist", root)
    assert [splits.test[i][1] for i in range(FASHION_TEST)] == arrays[
        "t10k-labels-idx1-ubyte"
    ].tolist()


def test_fashion_missing_folder(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_splits("fashion_mnist", tmp_path)
    assert_one_line(
        err,
        f"{tmp_path / 'FashionMNIST' / 'raw'} does not exist",
        f"run: sinreq download fashion_mnist --root {tmp_path}",
    )


def test_fashion_uses_the_debian_folder_and_then_does_no_work(tmp_path, fashion, monkeypatch):
    source, _, contents = fashion
    monkeypatch.setattr(fetch, "_FASHION_DEBIAN", source)
    root = tmp_path / "data"
    raw = root / "FashionMNIST" / "raw"
    assert download("fashion_mnist", root) == raw  # the network is disabled: Debian's copy
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == contents["t10k-labels-idx1-ubyte"]
    # present and intact: nothing is imported or fetched, even with no source left at all
    monkeypatch.setattr(fetch, "_FASHION_DEBIAN", tmp_path / "gone")
    for gz in source.iterdir():
        gz.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    assert download("fashion_mnist", root) == raw
    assert download("fashion_mnist", root, source=source) == raw
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before


@pytest.mark.parametrize("failure", ["patched", "no network"])
def test_fashion_download_failure_names_both_fixes(tmp_path, monkeypatch, failure):
    from torchvision.datasets import FashionMNIST

    if failure == "patched":

        def refuse(self):
            raise OSError("simulated outage")

        monkeypatch.setattr(FashionMNIST, "download", refuse)
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as err:
        download("fashion_mnist", root)
    assert_one_line(
        err,
        f"could not download Fashion-MNIST into {root}",
        "simulated outage" if failure == "patched" else "network disabled in tests",
        "apt-get install dataset-fashion-mnist",
        f"sinreq download fashion_mnist --root {root} --from DIR_WITH_GZ_FILES",
    )


def test_fashion_download_with_torchvision_repairs_corrupt_files(tmp_path, fashion, monkeypatch):
    from torchvision.datasets import FashionMNIST

    source, _, contents = fashion
    resources = [(f"{name}.gz", md5(source / f"{name}.gz")) for name in FASHION_FILES]
    monkeypatch.setattr(FashionMNIST, "resources", resources)
    web = FakeWeb({FashionMNIST.mirrors[0] + gz: (source / gz).read_bytes() for gz, _ in resources})
    monkeypatch.setattr(urllib.request, "urlopen", web)
    root = tmp_path / "data"
    raw = root / "FashionMNIST" / "raw"
    assert download("fashion_mnist", root) == raw
    assert len(web.requests) >= 4
    assert (raw / "train-images-idx3-ubyte").read_bytes() == contents["train-images-idx3-ubyte"]
    # a corrupted decompressed file is replaced, not reported as corrupt after the download
    flipped = bytearray(contents["train-labels-idx1-ubyte"])
    flipped[-1] ^= 0x01
    (raw / "train-labels-idx1-ubyte").write_bytes(bytes(flipped))
    assert download("fashion_mnist", root) == raw
    assert (raw / "train-labels-idx1-ubyte").read_bytes() == contents["train-labels-idx1-ubyte"]
    assert len(build_splits("fashion_mnist", root).test) == FASHION_TEST


def test_source_is_only_for_fashion_mnist(tmp_path):
    with pytest.raises(DatasetError) as err:
        download("cifar10", tmp_path, source=tmp_path)
    assert_one_line(err, "only supported for fashion_mnist", "cifar10")
    assert list(tmp_path.iterdir()) == []


def test_cli_download_fashion_from_folder(tmp_path, fashion, capsys):
    from sinreq.cli import main

    source, _, contents = fashion
    root = tmp_path / "data"
    assert main(["download", "fashion_mnist", "--root", str(root), "--from", str(source)]) == 0
    raw = root / "FashionMNIST" / "raw"
    assert capsys.readouterr().out == f"{raw}\n"
    assert (raw / "t10k-images-idx3-ubyte").read_bytes() == contents["t10k-images-idx3-ubyte"]
    bad = tmp_path / "empty"
    bad.mkdir()
    code = main(["download", "fashion_mnist", "--root", str(tmp_path / "d2"), "--from", str(bad)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("sinreq download: error: Fashion-MNIST files missing in ")
    assert str(bad) in captured.err and "train-images-idx3-ubyte.gz" in captured.err


# ----------------------------------------------------------------------------- ImageNet


def test_imagenet_class_subset_transforms_and_splits(tmp_path):
    write_imagenet(tmp_path)
    splits = build_splits("imagenet", tmp_path, classes=2, val_fraction=0.2, split_seed=1)
    assert (splits.num_classes, splits.image_size) == (2, 224)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 2, 4)
    train_paths = {p for p, _ in splits.train.samples}
    val_paths = {p for p, _ in splits.val.samples}
    assert train_paths.isdisjoint(val_paths)
    expected = {str(p) for c in ("n01", "n02") for p in (tmp_path / "train" / c).glob("*.JPEG")}
    assert train_paths | val_paths == expected
    assert all("/val/" in p and label in (0, 1) for p, label in splits.test.samples)
    image, label = splits.test[2]  # n02/val_0.png: solid colour (70, 160, 100)
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32 and label == 1
    for channel, value in enumerate((70, 160, 100)):
        want = (value / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert image[channel].flatten().tolist() == pytest.approx([want] * 224 * 224, abs=1e-5)
    torch.manual_seed(0)
    draws = {splits.train[0][0].numpy().tobytes() for _ in range(4)}
    assert len(draws) > 1  # random resized crop on train
    assert torch.equal(splits.val[0][0], splits.val[0][0])  # centre crop on validation
    plain = build_splits(
        "imagenet", tmp_path, classes=2, val_fraction=0.2, split_seed=1, augment=False
    )
    assert torch.equal(plain.train[0][0], plain.train[0][0])
    assert plain.train[0][0].shape == (3, 224, 224)


def test_imagenet_all_classes_and_split_seed(tmp_path):
    write_imagenet(tmp_path)
    a = build_splits("imagenet", tmp_path, val_fraction=0.25)
    assert a.num_classes == 4 and len(a.test) == 8
    assert {label for _, label in a.test.samples} == {0, 1, 2, 3}
    framed, label = a.test[7]
    assert label == 3 and framed.shape == (3, 224, 224)
    grey = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert torch.allclose(framed, torch.tensor(grey).view(3, 1, 1).expand(3, 224, 224), atol=1e-5)
    b = build_splits("imagenet", tmp_path, val_fraction=0.25)
    c = build_splits("imagenet", tmp_path, val_fraction=0.25, split_seed=9)
    assert a.val.samples == b.val.samples
    assert a.val.samples != c.val.samples


def test_imagenet_missing_folder_says_where_to_put_files(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_splits("imagenet", tmp_path)
    assert_one_line(
        err, str(tmp_path), "train/<class>/*.JPEG", "val/<class>/*.JPEG", "image-net.org"
    )


def test_imagenet_incomplete_or_too_few_classes(tmp_path):
    write_imagenet(tmp_path)
    with pytest.raises(DatasetError) as err:
        build_splits("imagenet", tmp_path, classes=5)
    assert_one_line(err, "classes=5", "ImageNet has 4 classes")
    for f in (tmp_path / "val" / "n03").iterdir():
        f.unlink()
    with pytest.raises(DatasetError) as err:
        build_splits("imagenet", tmp_path)
    assert_one_line(err, "ImageNet in", "n03")


def test_imagenet_corrupt_archives_are_rejected(tmp_path):
    (tmp_path / "ILSVRC2012_img_train.tar").write_bytes(b"not a tar")
    with pytest.raises(DatasetError) as err:
        build_splits("imagenet", tmp_path)
    assert_one_line(err, f"cannot unpack the ImageNet archives in {tmp_path}")


# ----------------------------------------------------------------------------- loaders


@pytest.fixture
def numbered() -> Splits:
    """Small in-memory splits whose labels are the sample indices, so orders can be read off."""

    def part(n: int, first: int) -> TensorDataset:
        return TensorDataset(torch.zeros(n, 1), torch.arange(first, first + n))

    return Splits(part(103, 0), part(21, 103), part(45, 124), num_classes=1, image_size=1)


def order(loader) -> list[int]:
    return [i for _, labels in loader for i in labels.tolist()]


def test_train_loader_order_is_a_function_of_the_seed(numbered):
    train, _, _ = make_loaders(numbered, 10, seed=5)
    again, _, _ = make_loaders(numbered, 10, seed=5)
    other, _, _ = make_loaders(numbered, 10, seed=6)
    first = order(train)
    assert first == order(again)
    assert first != order(other)
    assert first != order(train)  # a new order every epoch
    assert first != sorted(first)  # shuffled
    assert sorted(first) == list(range(103))  # nothing dropped, although 103 % 10 != 0


def test_reseeding_the_train_generator_replays_an_epoch(numbered):
    train, _, _ = make_loaders(numbered, 16, seed=2)
    assert isinstance(train.generator, torch.Generator)
    order(train)
    train.generator.manual_seed(2 * 1000 + 7)
    replay = order(train)
    fresh, _, _ = make_loaders(numbered, 16, seed=0)
    fresh.generator.manual_seed(2 * 1000 + 7)
    assert replay == order(fresh)


def test_eval_loaders_keep_order_with_double_batches(numbered):
    _, val, test = make_loaders(numbered, 8, seed=0)
    assert val.batch_size == test.batch_size == 16
    assert order(val) == list(range(103, 124)) and order(test) == list(range(124, 169))
    assert [len(labels) for _, labels in test] == [16, 16, 13]


def test_loader_options_are_passed_through(numbered):
    train, val, test = make_loaders(numbered, 8, seed=0, workers=2, pin_memory=True)
    for loader in (train, val, test):
        assert loader.num_workers == 2 and loader.pin_memory
    assert val.persistent_workers and test.persistent_workers
    assert not train.persistent_workers  # see the next test
    for loader in make_loaders(numbered, 8, seed=0):
        assert loader.num_workers == 0 and not loader.persistent_workers and not loader.pin_memory


def test_worker_processes_do_not_change_the_replayed_order(numbered):
    """Reseeding replays an epoch whether or not it is the process's first, with or without
    worker processes (persistent workers would fail this: they skip a per-epoch seed draw)."""
    single, _, _ = make_loaders(numbered, 20, seed=0)
    single.generator.manual_seed(42)
    expected = order(single)
    workers, _, _ = make_loaders(numbered, 20, seed=0, workers=2)
    for _ in range(2):
        workers.generator.manual_seed(42)
        assert order(workers) == expected


def test_digits_batches(digits):
    train, val, _ = make_loaders(digits, 256, seed=0)
    images, labels = next(iter(train))
    assert images.shape == (256, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert next(iter(val))[0].shape == (len(digits.val), 3, 32, 32)  # 144 < 512


# ----------------------------------------------------------------------------- download


class FakeWeb:
    """Stands in for urllib.request.urlopen: serves fixed bytes per URL, counts requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []

    def __call__(self, request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        self.requests.append(url)
        if url not in self.files:
            raise urllib.error.URLError(f"no route to {url}")
        response = io.BytesIO(self.files[url])
        response.url = url
        response.length = len(self.files[url])
        return response


def cifar_archive(tmp_path: Path) -> bytes:
    source = tmp_path / "source"
    write_cifar(source)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buffer.getvalue()


def test_download_digits_copies_the_bundled_file_and_loading_prefers_it(tmp_path):
    import gzip

    from sklearn.datasets import load_digits

    root = tmp_path / "d"
    assert download("digits", root) == root
    rows = np.loadtxt(gzip.open(root / "digits.csv.gz"), delimiter=",")
    raw = load_digits()
    assert np.array_equal(rows[:, :64], raw.data) and np.array_equal(rows[:, 64], raw.target)
    # the prepared file is what gets loaded: change one label there and the split sees it
    rows[:, 64] = 0
    np.savetxt(root / "digits.csv.gz", rows, delimiter=",", fmt="%d")
    assert set(build_splits("digits", root).test.tensors[1].tolist()) == {0}


def test_corrupt_digits_file_is_one_clean_error(tmp_path):
    (tmp_path / "digits.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError) as err:
        build_splits("digits", tmp_path)
    assert_one_line(err, "digits.csv.gz", "sinreq download digits")


def test_download_imagenet_explains_the_licence(tmp_path):
    with pytest.raises(DatasetError) as err:
        download("imagenet", tmp_path)
    assert_one_line(err, "licence", "image-net.org", "train/<class>/*.JPEG")


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_download_network_failure_is_one_clean_error(tmp_path, name):
    with pytest.raises(DatasetError) as err:
        download(name, tmp_path)
    assert_one_line(err, "could not download", str(tmp_path), "network disabled in tests")


def test_download_cifar_verifies_and_unpacks(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    archive = cifar_archive(tmp_path)
    root = tmp_path / "data"
    web = FakeWeb({CIFAR10.url: archive})
    monkeypatch.setattr(urllib.request, "urlopen", web)
    # the archive does not match the real MD5: it is refused, nothing usable is left
    with pytest.raises(DatasetError) as err:
        download("cifar10", root)
    assert_one_line(err, "could not download CIFAR-10", "corrupted")
    assert not (root / "cifar-10-batches-py").exists()
    # with the table describing the generated archive, a fresh download goes through
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive).hexdigest())
    trust_cifar(monkeypatch, tmp_path / "source")
    root = tmp_path / "fresh"
    web.requests.clear()
    assert download("cifar10", root) == root / "cifar-10-batches-py"
    assert CIFAR10.url in web.requests
    assert len(build_splits("cifar10", root).test) == CIFAR_TEST
    # already present and intact: no request at all
    web.requests.clear()
    assert download("cifar10", root) == root / "cifar-10-batches-py"
    assert web.requests == []


def test_download_svhn_fetches_both_files(tmp_path, monkeypatch):
    from torchvision.datasets import SVHN

    source = tmp_path / "source"
    write_svhn(source)
    trust_svhn(monkeypatch, source)
    files = {}
    for split in ("train", "test"):
        url, name, _ = SVHN.split_list[split]
        files[url] = (source / name).read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", FakeWeb(files))
    root = tmp_path / "data"
    assert download("svhn", root) == root
    assert md5(root / "train_32x32.mat") == md5(source / "train_32x32.mat")
    assert len(build_splits("svhn", root).train) == round(0.9 * SVHN_TRAIN)
