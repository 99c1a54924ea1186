"""The entry points of training: a dataset name -> its :class:`~sinreq.data.splits.Splits`
(:func:`build_splits`) -> the train, validation and test loaders (:func:`make_loaders`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from sinreq.data.catalog import TITLES, DatasetError, check_name
from sinreq.data.digits import digits_splits
from sinreq.data.imagenet import imagenet_splits
from sinreq.data.readers import load_cifar10, load_fashion_mnist, load_svhn
from sinreq.data.splits import Splits, array_splits, cifar_augmentation


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
        name: one of :data:`~sinreq.data.DATASETS`.
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
    check_name(name)
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    root = Path(root).expanduser()
    if name == "digits":
        return digits_splits(root, val_fraction, split_seed, classes)
    if name == "imagenet":
        return imagenet_splits(root, val_fraction, split_seed, augment, classes)
    load = {"cifar10": load_cifar10, "svhn": load_svhn, "fashion_mnist": load_fashion_mnist}
    augmentation = cifar_augmentation() if augment and name == "cifar10" else None
    return array_splits(
        load[name](root), val_fraction, split_seed, augmentation, classes, TITLES[name]
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
