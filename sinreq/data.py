"""Datasets for the SinReQ reproduction: train / validation / test splits and their loaders.

Five datasets are known (:data:`DATASETS`):

``digits``
    scikit-learn's bundled 8x8 handwritten digits (no files needed), upscaled to 32x32 RGB so
    that the CIFAR-sized networks run on it. The default, for quick runs.
``cifar10``
    torchvision's CIFAR-10 python format in ``ROOT/cifar-10-batches-py/``.
``svhn``
    torchvision's SVHN format: ``ROOT/train_32x32.mat`` and ``ROOT/test_32x32.mat``.
``fashion_mnist``
    Fashion-MNIST in torchvision's layout: the four decompressed IDX files in
    ``ROOT/FashionMNIST/raw/``. The 28x28 grayscale images are zero-padded to 32x32 and repeated
    into 3 channels, so that the paper's 32x32 RGB networks run on them unchanged.
``imagenet``
    a user-supplied ImageFolder tree ``ROOT/train/<class>/*.JPEG`` and ``ROOT/val/<class>/*.JPEG``.

CIFAR-10, SVHN and Fashion-MNIST are parsed by torchvision, and only after every file it will
open has been checked against its published MD5 sum (:func:`_verify`): torchvision's sums for
CIFAR-10 and SVHN, upstream's sums of the decompressed files for Fashion-MNIST
(:data:`_FASHION_MD5`). ``sinreq download NAME --root DIR`` fetches them. Fashion-MNIST can also
be imported from a folder of its four ``.gz`` files (``--from DIR``), e.g. Debian's package
``dataset-fashion-mnist``, which is used by default when installed. Validation is always a
seeded hold-out of the training data, so that model selection never sees the test split.

Every problem the user can fix (unknown name, missing or corrupt files, failed download) is
raised as a :class:`DatasetError` with a one-line message that says what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

if TYPE_CHECKING:
    import numpy as np

DATASETS: tuple[str, ...] = ("digits", "cifar10", "svhn", "fashion_mnist", "imagenet")

_TITLES = {
    "digits": "digits",
    "cifar10": "CIFAR-10",
    "svhn": "SVHN",
    "fashion_mnist": "Fashion-MNIST",
    "imagenet": "ImageNet",
}
_CIFAR_FOLDER = "cifar-10-batches-py"
_SVHN_SPLITS = ("train", "test")
# torchvision.datasets.FashionMNIST's layout: the decompressed IDX files in ROOT/FashionMNIST/raw.
_FASHION_FOLDER = Path("FashionMNIST") / "raw"
# MD5 of the decompressed IDX files, byte-identical upstream and in Debian. Debian recompressed
# the .gz files, so the .gz MD5s that torchvision publishes do not fit its copies.
_FASHION_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
# Where `apt-get install dataset-fashion-mnist` puts the four .gz files.
_FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
_IMAGENET_ARCHIVES = (
    "ILSVRC2012_img_train.tar",
    "ILSVRC2012_img_val.tar",
    "ILSVRC2012_devkit_t12.tar.gz",
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# The authors normalised CIFAR-10 and SVHN with mean 0.5 and std 0.5 in every channel.
_MEAN = 0.5
_STD = 0.5
# The digits test split is fixed: it does not move with split_seed, like the CIFAR/SVHN test sets.
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0
_DIGITS_FILE = "digits.csv.gz"


class DatasetError(ValueError):
    """A dataset cannot be provided; the message is one line that says what to run or fix."""


@dataclass
class Splits:
    """The three splits of one dataset, with what a model needs to know about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    image_size: int


class _Arrays(NamedTuple):
    """A parsed 32x32 dataset: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


class _TensorImages(Dataset):
    """uint8 images held in memory; yields (normalised float image, label).

    ``augment``, when given, acts on the [0, 1] image before normalisation, so that padding
    added by a random crop is black, as with the usual PIL pipeline.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].float().div(255)
        if self.augment is not None:
            image = self.augment(image)
        return (image - _MEAN) / _STD, int(self.labels[index])


class _ImageFiles(Dataset):
    """Image files on disk, as (path, label) pairs; yields (transformed image, label)."""

    def __init__(
        self,
        samples: list[tuple[str, int]],
        transform: Callable,
        loader: Callable[[str], object],
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.loader = loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(self.loader(path)), label


def build_splits(
    name: str,
    root: str | Path,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    augment: bool = True,
    classes: int | None = None,
) -> Splits:
    """Build the train, validation and test splits of dataset ``name``.

    Args:
        name: one of :data:`DATASETS`.
        root: the folder the dataset lives in (for ``digits``, where ``sinreq download digits``
            put its file; without it, scikit-learn's bundled copy is read).
        val_fraction: fraction of the training data held out as validation, in (0, 1).
        split_seed: seed of the validation hold-out (and nothing else); the same arguments
            always give the same splits, whatever the training seed. The test split never
            moves: it is the dataset's own test set, or for digits a fixed 20 % of the images.
        augment: apply the training augmentation (CIFAR-10: random crop with padding 4 and
            horizontal flip; ImageNet: random resized crop and flip) to the train split.
            Validation and test are never augmented; digits, SVHN and Fashion-MNIST never are.
        classes: keep only the first ``classes`` classes (by sorted class name; for the
            built-in datasets the class names sort as their labels). The authors used a
            100-class ImageNet subset.

    Raises:
        DatasetError: unknown name, bad arguments, or missing / corrupt files.
    """
    _check_name(name)
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    root = Path(root).expanduser()
    if name == "digits":
        return _digits_splits(root, val_fraction, split_seed, classes)
    if name == "imagenet":
        return _imagenet_splits(root, val_fraction, split_seed, augment, classes)
    load = {"cifar10": _load_cifar10, "svhn": _load_svhn, "fashion_mnist": _load_fashion_mnist}
    augmentation = _cifar_augmentation() if augment and name == "cifar10" else None
    return _array_splits(
        load[name](root), val_fraction, split_seed, augmentation, classes, _TITLES[name]
    )


def make_loaders(
    splits: Splits,
    batch_size: int,
    *,
    seed: int,
    workers: int = 0,
    pin_memory: bool = False,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Return (train, val, test) loaders.

    The train loader reshuffles every epoch, drawing its order (and, with ``workers > 0``, the
    worker seeds) from the ``torch.Generator`` in its ``generator`` attribute, seeded with
    ``seed``. An epoch's order is a pure function of that generator's state when the epoch
    starts, so to make epoch ``e`` reproducible (e.g. after a resume) call
    ``train.generator.manual_seed(seed * 1000 + e)`` before iterating it. With ``workers > 0``
    the augmentation is then reproducible too, as the workers are seeded from the generator at
    the start of each epoch; with ``workers == 0`` it draws from torch's global generator.

    For that reason the train loader's workers do not persist across epochs (persistent workers
    would skip the per-epoch seed draw and change the order after a resume); the validation
    and test loaders, which do not shuffle, keep theirs when ``workers > 0``. Validation and
    test keep the dataset order and use batches twice as large. No batch is dropped.
    ``pin_memory`` is passed to all three loaders.
    """
    train = DataLoader(
        splits.train,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        drop_last=False,
        num_workers=workers,
        pin_memory=pin_memory,
    )
    evaluation = {
        "batch_size": 2 * batch_size,
        "shuffle": False,
        "num_workers": workers,
        "pin_memory": pin_memory,
        "persistent_workers": workers > 0,
    }
    val = DataLoader(splits.val, **evaluation)
    test = DataLoader(splits.test, **evaluation)
    return train, val, test


def download(name: str, root: str | Path, source: str | Path | None = None) -> Path:
    """Fetch dataset ``name`` into ``root``, verify its checksums and return its folder.

    CIFAR-10 and SVHN are fetched with torchvision's own download functions from the URLs, and
    checked against the MD5 sums, that torchvision publishes; files already present and intact
    are not fetched again. Fashion-MNIST is decompressed from the four IDX ``.gz`` files in
    ``source`` (only allowed for it) or, without ``source``, in :data:`_FASHION_DEBIAN` when
    that exists, else downloaded with torchvision; either way its decompressed files are
    checked against :data:`_FASHION_MD5`. ``digits`` ships with scikit-learn: its bundled
    ``digits.csv.gz`` is copied into ``root`` (the pipeline's prepared-data folder) and ``root``
    is returned. ImageNet cannot be downloaded automatically (its licence requires each user to
    obtain it from image-net.org): a :class:`DatasetError` explains the expected layout.

    Raises:
        DatasetError: unknown name, ImageNet, ``source`` for another dataset than
            Fashion-MNIST, or a failed / corrupt download or import.
    """
    _check_name(name)
    if source is not None and name != "fashion_mnist":
        raise DatasetError(
            f"a source folder (--from) is only supported for fashion_mnist, not {name}; "
            f"run: sinreq download {name} --root DIR"
        )
    root = Path(root).expanduser()
    if name == "digits":
        return _copy_digits(root)
    if name == "imagenet":
        raise DatasetError(_imagenet_missing(root))
    if _problems(name, root):
        if name == "fashion_mnist":
            _get_fashion_mnist(root, None if source is None else Path(source).expanduser())
        else:
            _fetch_with_torchvision(name, root)
        _verify(name, root)
    return _folder(name, root)


def _check_name(name: str) -> None:
    """Refuse an unknown dataset name, listing the known ones."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def _one_line(exc: BaseException) -> str:
    """``exc``'s message on one line, so that a DatasetError built from it stays one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _folder(name: str, root: Path) -> Path:
    """The folder under ``root`` that holds the files of ``name``."""
    if name == "cifar10":
        return root / _CIFAR_FOLDER
    if name == "fashion_mnist":
        return root / _FASHION_FOLDER
    return root


def _expected_checksums(name: str) -> dict[str, str]:
    """File name -> published MD5 of every file that the reader of ``name`` opens."""
    from torchvision.datasets import CIFAR10, SVHN

    if name == "cifar10":  # the five training batches, the test batch and the label names
        meta = [(CIFAR10.meta["filename"], CIFAR10.meta["md5"])]
        return dict(CIFAR10.train_list + CIFAR10.test_list + meta)
    if name == "svhn":
        return {SVHN.split_list[split][1]: SVHN.split_list[split][2] for split in _SVHN_SPLITS}
    return dict(_FASHION_MD5)


def _problems(name: str, root: Path) -> list[str]:
    """What is wrong with the files of ``name`` under ``root`` (empty when all are intact)."""
    from torchvision.datasets.utils import check_integrity

    folder = _folder(name, root)
    expected = _expected_checksums(name)
    missing = [f for f in expected if not (folder / f).is_file()]
    corrupt = [
        f for f in expected if f not in missing and not check_integrity(folder / f, expected[f])
    ]
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if corrupt:
        problems.append("checksum mismatch: " + ", ".join(corrupt))
    return problems


def _verify(name: str, root: Path) -> None:
    """Raise DatasetError unless every file of ``name`` is present with its published MD5."""
    folder = _folder(name, root)
    fix = f"run: sinreq download {name} --root {root}"
    if not folder.is_dir():
        raise DatasetError(f"{_TITLES[name]} not found: {folder} does not exist; {fix}")
    problems = _problems(name, root)
    if problems:
        raise DatasetError(
            f"{_TITLES[name]} files in {folder} are missing or corrupt "
            f"({'; '.join(problems)}); {fix}"
        )


def _load_cifar10(root: Path) -> _Arrays:
    """CIFAR-10 parsed by torchvision, verified first: its files are pickles, and unpickling an
    untrusted file can run arbitrary code."""
    from torchvision.datasets import CIFAR10

    _verify("cifar10", root)
    train, test = CIFAR10(str(root), train=True), CIFAR10(str(root), train=False)
    # torchvision's .data is (N, H, W, C), a transposed view of the files' (N, C, H, W) bytes
    return _Arrays(
        *_as_tensors(train.data.transpose(0, 3, 1, 2), train.targets),
        *_as_tensors(test.data.transpose(0, 3, 1, 2), test.targets),
    )


def _load_svhn(root: Path) -> _Arrays:
    """SVHN parsed by torchvision (which maps label 10, the digit 0, to 0), verified first."""
    from torchvision.datasets import SVHN

    _verify("svhn", root)
    train, test = SVHN(str(root), split="train"), SVHN(str(root), split="test")
    return _Arrays(*_as_tensors(train.data, train.labels), *_as_tensors(test.data, test.labels))


def _as_tensors(
    images: np.ndarray, labels: np.ndarray | list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32), stored in that order (torchvision may hand a transposed
    view), and int64 labels (N,): what :class:`_Arrays` holds."""
    import numpy as np

    images = torch.from_numpy(np.ascontiguousarray(images))
    return images, torch.as_tensor(labels, dtype=torch.int64).reshape(-1)


def _load_fashion_mnist(root: Path) -> _Arrays:
    """Fashion-MNIST parsed by torchvision's IDX readers, verified first, padded to 32x32 RGB.

    The readers, not ``torchvision.datasets.FashionMNIST``: that class reads a legacy
    ``FashionMNIST/processed/*.pt`` cache instead of the verified raw files when one exists.
    The 28x28 images are zero-padded by 2 pixels on each side and repeated into 3 channels
    (a view: no copy), so that the 32x32 RGB networks run on them unchanged.
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    _verify("fashion_mnist", root)
    raw = root / _FASHION_FOLDER

    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = read_image_file(str(raw / f"{split}-images-idx3-ubyte"))
        labels = read_label_file(str(raw / f"{split}-labels-idx1-ubyte"))
        padded = torch.nn.functional.pad(images, (2, 2, 2, 2)).unsqueeze(1)
        return padded.expand(-1, 3, -1, -1), labels

    return _Arrays(*read("train"), *read("t10k"))


def _fetch_with_torchvision(name: str, root: Path) -> None:
    """Download CIFAR-10 or SVHN from torchvision's URLs, checked against torchvision's MD5s."""
    import http.client
    import tarfile

    from torchvision.datasets import CIFAR10, SVHN
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    try:
        if name == "cifar10":
            download_and_extract_archive(
                CIFAR10.url, root, filename=CIFAR10.filename, md5=CIFAR10.tgz_md5
            )
        else:
            for split in _SVHN_SPLITS:
                url, filename, md5 = SVHN.split_list[split]
                download_url(url, root, filename=filename, md5=md5)
    except (OSError, RuntimeError, EOFError, tarfile.TarError, http.client.HTTPException) as exc:
        raise DatasetError(
            f"could not download {_TITLES[name]} into {root}: {_one_line(exc)}; "
            "check the network connection and run the download again"
        ) from exc


def _get_fashion_mnist(root: Path, source: Path | None) -> None:
    """Put the Fashion-MNIST files in place: from ``source``, else Debian's copy, else the web."""
    if source is None and _FASHION_DEBIAN.is_dir():
        source = _FASHION_DEBIAN
    if source is None:
        _fetch_fashion_mnist(root)
    else:
        _import_fashion_mnist(source, root / _FASHION_FOLDER)


def _import_fashion_mnist(source: Path, raw: Path) -> None:
    """Decompress the four IDX ``.gz`` files of ``source`` into ``raw``, verifying each."""
    expected = _expected_checksums("fashion_mnist")
    missing = [f"{f}.gz" for f in expected if not (source / f"{f}.gz").is_file()]
    if missing:
        raise DatasetError(
            f"Fashion-MNIST files missing in {source}: {', '.join(missing)}; the folder must "
            "hold the four IDX .gz files (apt-get install dataset-fashion-mnist provides them)"
        )
    raw.mkdir(parents=True, exist_ok=True)
    for filename, md5 in expected.items():
        _decompress_verified(source / f"{filename}.gz", raw / filename, md5)


def _decompress_verified(archive: Path, target: Path, md5: str) -> None:
    """Gunzip ``archive`` into ``target`` through a temporary file, renamed only once its MD5
    is ``md5``, so that an interrupted or corrupt import never leaves a bad file in place."""
    import gzip
    import shutil
    import zlib

    from torchvision.datasets.utils import calculate_md5

    partial = target.with_name(f".{target.name}.partial")
    try:
        with gzip.open(archive, "rb") as packed, open(partial, "wb") as out:
            shutil.copyfileobj(packed, out)
    except (OSError, EOFError, zlib.error) as exc:
        partial.unlink(missing_ok=True)
        raise DatasetError(
            f"cannot decompress Fashion-MNIST file {archive}: {_one_line(exc)}"
        ) from exc
    digest = calculate_md5(partial)
    if digest != md5:
        partial.unlink()
        raise DatasetError(
            f"Fashion-MNIST file {archive} is corrupt: its content has MD5 {digest}, "
            f"expected {md5}; replace it with an intact copy"
        )
    partial.replace(target)


def _fetch_fashion_mnist(root: Path) -> None:
    """Download Fashion-MNIST with torchvision (its mirrors, and its MD5s of the ``.gz`` files)."""
    import http.client
    import zlib

    from torchvision.datasets import FashionMNIST
    from torchvision.datasets.utils import check_integrity

    # torchvision only checks that the decompressed files exist: drop corrupt ones to refetch them
    for filename, md5 in _expected_checksums("fashion_mnist").items():
        path = root / _FASHION_FOLDER / filename
        if path.is_file() and not check_integrity(path, md5):
            path.unlink()
    try:
        FashionMNIST(str(root), train=True, download=True)
    except (OSError, RuntimeError, EOFError, zlib.error, http.client.HTTPException) as exc:
        raise DatasetError(
            f"could not download Fashion-MNIST into {root}: {_one_line(exc)}; either run "
            "apt-get install dataset-fashion-mnist and then this command again, or run: "
            f"sinreq download fashion_mnist --root {root} --from DIR_WITH_GZ_FILES"
        ) from exc


def _cifar_augmentation() -> Callable[[torch.Tensor], torch.Tensor]:
    """The authors' CIFAR-10 training augmentation: random crop with padding 4, random flip."""
    from torchvision import transforms

    return transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    )


def _holdout(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into (kept, held out) sorted index tensors; ``fraction`` is held out."""
    held_count = round(n * fraction)
    if not 0 < held_count < n:
        raise DatasetError(
            f"cannot hold out a fraction {fraction} of {n} images: both parts must be non-empty"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[held_count:].sort().values, order[:held_count].sort().values


def _num_classes(available: int, classes: int | None, title: str) -> int:
    """How many classes to keep: all ``available`` unless ``classes`` asks for fewer."""
    if classes is None:
        return available
    if not 1 <= classes <= available:
        raise DatasetError(f"classes={classes} is not possible: {title} has {available} classes")
    return classes


def _first_classes(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images whose label is below ``num_classes`` (no copy when that is all of them)."""
    keep = labels < num_classes
    if bool(keep.all()):
        return images, labels
    return images[keep], labels[keep]


def _array_splits(
    arrays: _Arrays,
    val_fraction: float,
    split_seed: int,
    augment: Callable[[torch.Tensor], torch.Tensor] | None,
    classes: int | None,
    title: str,
) -> Splits:
    """Splits of a 10-class 32x32 dataset held in memory; validation is held out of train."""
    num_classes = _num_classes(10, classes, title)
    images, labels = _first_classes(arrays.train_images, arrays.train_labels, num_classes)
    test_images, test_labels = _first_classes(arrays.test_images, arrays.test_labels, num_classes)
    kept, held = _holdout(len(labels), val_fraction, split_seed)
    return Splits(
        train=_TensorImages(images[kept], labels[kept], augment),
        val=_TensorImages(images[held], labels[held]),
        test=_TensorImages(test_images, test_labels),
        num_classes=num_classes,
        image_size=32,
    )


def _copy_digits(root: Path) -> Path:
    """Copy scikit-learn's bundled digits file into ``root``, the prepared-data folder."""
    import shutil

    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_bundled_digits(), root / _DIGITS_FILE)
    return root


def _bundled_digits() -> Path:
    """scikit-learn's bundled ``digits.csv.gz``, found without importing scikit-learn, which is
    slow to import."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the digits dataset needs scikit-learn; run: pip install scikit-learn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / _DIGITS_FILE


def _read_digits(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 8, 8) in 0..16 and labels from ``ROOT/digits.csv.gz`` (written by
    ``sinreq download digits``) or else from scikit-learn's bundled copy: 64 pixels + label."""
    import numpy as np

    path = root / _DIGITS_FILE if (root / _DIGITS_FILE).is_file() else _bundled_digits()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        if table.ndim != 2 or table.shape[1] != 65:
            raise ValueError(f"expected 65 columns, got shape {table.shape}")
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(
            f"digits file {path} is unreadable ({_one_line(exc)}); run: sinreq download digits "
            f"--root {root}"
        ) from exc
    table = torch.from_numpy(table)
    return table[:, :64].reshape(-1, 8, 8), table[:, 64].long()


def _digits_splits(root: Path, val_fraction: float, split_seed: int, classes: int | None) -> Splits:
    """scikit-learn's digits: values 0..16 scaled to [0, 1], bilinear 8->32, 3 channels."""
    raw_images, labels = _read_digits(root)
    pixels = raw_images.div(16).unsqueeze(1)
    resized = torch.nn.functional.interpolate(
        pixels, size=(32, 32), mode="bilinear", align_corners=False
    )
    images = (resized.repeat(1, 3, 1, 1) - _MEAN) / _STD
    rest, test = _holdout(len(labels), _DIGITS_TEST_FRACTION, _DIGITS_TEST_SEED)
    num_classes = _num_classes(10, classes, "digits")
    images_rest, labels_rest = _first_classes(images[rest], labels[rest], num_classes)
    images_test, labels_test = _first_classes(images[test], labels[test], num_classes)
    kept, held = _holdout(len(labels_rest), val_fraction, split_seed)
    return Splits(
        train=TensorDataset(images_rest[kept], labels_rest[kept]),
        val=TensorDataset(images_rest[held], labels_rest[held]),
        test=TensorDataset(images_test, labels_test),
        num_classes=num_classes,
        image_size=32,
    )


def _imagenet_missing(root: Path) -> str:
    """Why ImageNet is missing and where to put it: it cannot be fetched for the user."""
    return (
        f"ImageNet not found in {root}: it cannot be downloaded automatically (licence); "
        f"get ILSVRC2012 from https://image-net.org and put it in {root} as "
        f"train/<class>/*.JPEG and val/<class>/*.JPEG folders, or as the archives "
        f"{', '.join(_IMAGENET_ARCHIVES)} (unpacked on first use)"
    )


def _prepare_imagenet(root: Path) -> None:
    """Make sure ``root/train`` and ``root/val`` exist, unpacking the ILSVRC2012 archives if given.

    Unpacking uses ``torchvision.datasets.ImageNet``, which checks the archives' MD5 sums and
    writes the same ``train/<wnid>/`` and ``val/<wnid>/`` layout.
    """
    if (root / "train").is_dir() and (root / "val").is_dir():
        return
    if not (root / _IMAGENET_ARCHIVES[0]).is_file():
        raise DatasetError(_imagenet_missing(root))
    from torchvision.datasets import ImageNet

    try:
        for split in ("train", "val"):
            ImageNet(str(root), split=split)
    except (OSError, RuntimeError) as exc:
        raise DatasetError(
            f"cannot unpack the ImageNet archives in {root}: {_one_line(exc)}"
        ) from exc


def _imagenet_splits(
    root: Path, val_fraction: float, split_seed: int, augment: bool, classes: int | None
) -> Splits:
    """ImageFolder-style ImageNet: validation held out of ``train/``, test is ``val/``."""
    from torchvision import transforms
    from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, make_dataset

    _prepare_imagenet(root)
    names = sorted(entry.name for entry in (root / "train").iterdir() if entry.is_dir())
    if not names:
        raise DatasetError(
            f"ImageNet folder {root / 'train'} has no class folders; {_imagenet_missing(root)}"
        )
    num_classes = _num_classes(len(names), classes, "ImageNet")
    class_to_idx = {class_name: i for i, class_name in enumerate(names[:num_classes])}
    try:
        train = make_dataset(root / "train", class_to_idx, extensions=IMG_EXTENSIONS)
        test = make_dataset(root / "val", class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:
        raise DatasetError(f"ImageNet in {root} is incomplete: {_one_line(exc)}") from exc

    to_tensor = [transforms.ToTensor(), transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)]
    evaluate = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), *to_tensor])
    fit = evaluate
    if augment:
        fit = transforms.Compose(
            [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), *to_tensor]
        )
    kept, held = _holdout(len(train), val_fraction, split_seed)
    return Splits(
        train=_ImageFiles([train[i] for i in kept.tolist()], fit, default_loader),
        val=_ImageFiles([train[i] for i in held.tolist()], evaluate, default_loader),
        test=_ImageFiles(test, evaluate, default_loader),
        num_classes=num_classes,
        image_size=224,
    )
