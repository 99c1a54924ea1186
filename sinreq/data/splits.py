"""The three splits of a dataset and how they are cut: a seeded hold-out of the training data
as validation, the first classes as a subset, and 32x32 image tensors held in memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from sinreq.data.catalog import DatasetError
from sinreq.data.readers import Arrays

# The authors normalised CIFAR-10 and SVHN with mean 0.5 and std 0.5 in every channel.
MEAN = 0.5
STD = 0.5


@dataclass
class Splits:
    """The three splits of one dataset, with what a model needs to know about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    image_size: int


class TensorImages(Dataset):
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
        return (image - MEAN) / STD, int(self.labels[index])


def holdout(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into (kept, held out) sorted index tensors; ``fraction`` is held out."""
    held_count = round(n * fraction)
    if not 0 < held_count < n:
        raise DatasetError(
            f"cannot hold out a fraction {fraction} of {n} images: both parts must be non-empty"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[held_count:].sort().values, order[:held_count].sort().values


def num_classes_kept(available: int, classes: int | None, title: str) -> int:
    """How many classes to keep: all ``available`` unless ``classes`` asks for fewer."""
    if classes is None:
        return available
    if not 1 <= classes <= available:
        raise DatasetError(f"classes={classes} is not possible: {title} has {available} classes")
    return classes


def first_classes(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images whose label is below ``num_classes`` (no copy when that is all of them)."""
    keep = labels < num_classes
    if bool(keep.all()):
        return images, labels
    return images[keep], labels[keep]


def cifar_augmentation() -> Callable[[torch.Tensor], torch.Tensor]:
    """The authors' CIFAR-10 training augmentation: random crop with padding 4, random flip."""
    from torchvision import transforms

    return transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    )


def array_splits(
    arrays: Arrays,
    val_fraction: float,
    split_seed: int,
    augment: Callable[[torch.Tensor], torch.Tensor] | None,
    classes: int | None,
    title: str,
) -> Splits:
    """Splits of a 10-class 32x32 dataset held in memory; validation is held out of train."""
    num_classes = num_classes_kept(10, classes, title)
    images, labels = first_classes(arrays.train_images, arrays.train_labels, num_classes)
    test_images, test_labels = first_classes(arrays.test_images, arrays.test_labels, num_classes)
    kept, held = holdout(len(labels), val_fraction, split_seed)
    return Splits(
        train=TensorImages(images[kept], labels[kept], augment),
        val=TensorImages(images[held], labels[held]),
        test=TensorImages(test_images, test_labels),
        num_classes=num_classes,
        image_size=32,
    )
