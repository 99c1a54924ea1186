"""The known datasets, their display names, and the one error type every user-fixable problem
is raised as."""

from __future__ import annotations

DATASETS: tuple[str, ...] = ("digits", "cifar10", "svhn", "fashion_mnist", "imagenet")

TITLES = {
    "digits": "digits",
    "cifar10": "CIFAR-10",
    "svhn": "SVHN",
    "fashion_mnist": "Fashion-MNIST",
    "imagenet": "ImageNet",
}


class DatasetError(ValueError):
    """A dataset cannot be provided; the message is one line that says what to run or fix."""


def check_name(name: str) -> None:
    """Refuse an unknown dataset name, listing the known ones."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line, so that a DatasetError built from it stays one line."""
    return " ".join(str(exc).split()) or type(exc).__name__
