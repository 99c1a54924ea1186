"""scikit-learn's bundled 8x8 digits: copied into the prepared-data folder by ``sinreq download
digits``, read from there (else from scikit-learn), upscaled to 32x32 RGB and split."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from sinreq.data.catalog import DatasetError, one_line
from sinreq.data.splits import MEAN, STD, Splits, first_classes, holdout, num_classes_kept

# The digits test split is fixed: it does not move with split_seed, like the CIFAR/SVHN test sets.
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0
_DIGITS_FILE = "digits.csv.gz"


def copy_digits(root: Path) -> Path:
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
            f"digits file {path} is unreadable ({one_line(exc)}); run: sinreq download digits "
            f"--root {root}"
        ) from exc
    table = torch.from_numpy(table)
    return table[:, :64].reshape(-1, 8, 8), table[:, 64].long()


def digits_splits(root: Path, val_fraction: float, split_seed: int, classes: int | None) -> Splits:
    """scikit-learn's digits: values 0..16 scaled to [0, 1], bilinear 8->32, 3 channels."""
    raw_images, labels = _read_digits(root)
    pixels = raw_images.div(16).unsqueeze(1)
    resized = torch.nn.functional.interpolate(
        pixels, size=(32, 32), mode="bilinear", align_corners=False
    )
    images = (resized.repeat(1, 3, 1, 1) - MEAN) / STD
    rest, test = holdout(len(labels), _DIGITS_TEST_FRACTION, _DIGITS_TEST_SEED)
    num_classes = num_classes_kept(10, classes, "digits")
    images_rest, labels_rest = first_classes(images[rest], labels[rest], num_classes)
    images_test, labels_test = first_classes(images[test], labels[test], num_classes)
    kept, held = holdout(len(labels_rest), val_fraction, split_seed)
    return Splits(
        train=TensorDataset(images_rest[kept], labels_rest[kept]),
        val=TensorDataset(images_rest[held], labels_rest[held]),
        test=TensorDataset(images_test, labels_test),
        num_classes=num_classes,
        image_size=32,
    )
