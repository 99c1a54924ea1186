"""ImageNet from a user-supplied ImageFolder tree (or the ILSVRC2012 archives, unpacked on first
use): image files on disk, validation held out of ``train/``, ``val/`` as the test split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from sinreq.data.catalog import DatasetError, one_line
from sinreq.data.splits import Splits, holdout, num_classes_kept

_IMAGENET_ARCHIVES = (
    "ILSVRC2012_img_train.tar",
    "ILSVRC2012_img_val.tar",
    "ILSVRC2012_devkit_t12.tar.gz",
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFiles(Dataset):
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


def imagenet_missing(root: Path) -> str:
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
        raise DatasetError(imagenet_missing(root))
    from torchvision.datasets import ImageNet

    try:
        for split in ("train", "val"):
            ImageNet(str(root), split=split)
    except (OSError, RuntimeError) as exc:
        raise DatasetError(
            f"cannot unpack the ImageNet archives in {root}: {one_line(exc)}"
        ) from exc


def imagenet_splits(
    root: Path, val_fraction: float, split_seed: int, augment: bool, classes: int | None
) -> Splits:
    """ImageFolder-style ImageNet: validation held out of ``train/``, test is ``val/``."""
    from torchvision import transforms
    from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, make_dataset

    _prepare_imagenet(root)
    names = sorted(entry.name for entry in (root / "train").iterdir() if entry.is_dir())
    if not names:
        raise DatasetError(
            f"ImageNet folder {root / 'train'} has no class folders; {imagenet_missing(root)}"
        )
    num_classes = num_classes_kept(len(names), classes, "ImageNet")
    class_to_idx = {class_name: i for i, class_name in enumerate(names[:num_classes])}
    try:
        train = make_dataset(root / "train", class_to_idx, extensions=IMG_EXTENSIONS)
        test = make_dataset(root / "val", class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:
        raise DatasetError(f"ImageNet in {root} is incomplete: {one_line(exc)}") from exc

    to_tensor = [transforms.ToTensor(), transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)]
    evaluate = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), *to_tensor])
    fit = evaluate
    if augment:
        fit = transforms.Compose(
            [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), *to_tensor]
        )
    kept, held = holdout(len(train), val_fraction, split_seed)
    return Splits(
        train=ImageFiles([train[i] for i in kept.tolist()], fit, default_loader),
        val=ImageFiles([train[i] for i in held.tolist()], evaluate, default_loader),
        test=ImageFiles(test, evaluate, default_loader),
        num_classes=num_classes,
        image_size=224,
    )
