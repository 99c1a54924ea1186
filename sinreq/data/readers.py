"""CIFAR-10, SVHN and Fashion-MNIST parsed by torchvision into uint8 tensors, each only after
every file it opens has passed its published MD5 (torchvision's own check for CIFAR-10 and SVHN,
:func:`~sinreq.data.checksums.verify` for Fashion-MNIST)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import torch

from sinreq.data.checksums import FASHION_FOLDER, verify

if TYPE_CHECKING:
    import numpy as np


T = TypeVar("T")


class Arrays(NamedTuple):
    """A parsed 32x32 dataset: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def _checked(name: str, root: Path, open_dataset: Callable[[], T]) -> T:
    """``open_dataset()``, whose torchvision class checks every file's MD5 before parsing it; when
    that check fails, :func:`verify` names the missing or corrupt files in one line."""
    try:
        return open_dataset()
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        verify(name, root)
        raise


def load_cifar10(root: Path) -> Arrays:
    """CIFAR-10 parsed by torchvision, which checks the MD5s before it unpickles anything
    (unpickling an untrusted file can run arbitrary code)."""
    from torchvision.datasets import CIFAR10

    train, test = _checked(
        "cifar10", root, lambda: (CIFAR10(str(root), train=True), CIFAR10(str(root), train=False))
    )
    # torchvision's .data is (N, H, W, C), a transposed view of the files' (N, C, H, W) bytes
    return Arrays(
        *_as_tensors(train.data.transpose(0, 3, 1, 2), train.targets),
        *_as_tensors(test.data.transpose(0, 3, 1, 2), test.targets),
    )


def load_svhn(root: Path) -> Arrays:
    """SVHN parsed (and MD5-checked) by torchvision, which maps label 10, the digit 0, to 0."""
    from torchvision.datasets import SVHN

    train, test = _checked(
        "svhn", root, lambda: (SVHN(str(root), split="train"), SVHN(str(root), split="test"))
    )
    return Arrays(*_as_tensors(train.data, train.labels), *_as_tensors(test.data, test.labels))


def _as_tensors(
    images: np.ndarray, labels: np.ndarray | list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32), stored in that order (torchvision may hand a transposed
    view), and int64 labels (N,): what :class:`Arrays` holds."""
    import numpy as np

    images = torch.from_numpy(np.ascontiguousarray(images))
    return images, torch.as_tensor(labels, dtype=torch.int64).reshape(-1)


def load_fashion_mnist(root: Path) -> Arrays:
    """Fashion-MNIST parsed by torchvision's IDX readers, verified first, padded to 32x32 RGB.

    The readers, not ``torchvision.datasets.FashionMNIST``: that class reads a legacy
    ``FashionMNIST/processed/*.pt`` cache instead of the verified raw files when one exists.
    The 28x28 images are zero-padded by 2 pixels on each side and repeated into 3 channels
    (a view: no copy), so that the 32x32 RGB networks run on them unchanged.
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    verify("fashion_mnist", root)
    raw = root / FASHION_FOLDER

    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = read_image_file(str(raw / f"{split}-images-idx3-ubyte"))
        labels = read_label_file(str(raw / f"{split}-labels-idx1-ubyte"))
        padded = torch.nn.functional.pad(images, (2, 2, 2, 2)).unsqueeze(1)
        return padded.expand(-1, 3, -1, -1), labels

    return Arrays(*read("train"), *read("t10k"))
