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
open has been checked against its published MD5 sum (:func:`~sinreq.data.checksums.verify`):
torchvision's sums for CIFAR-10 and SVHN, upstream's sums of the decompressed files for
Fashion-MNIST (:data:`~sinreq.data.checksums._FASHION_MD5`). ``sinreq download NAME --root DIR``
fetches them. Fashion-MNIST can also be imported from a folder of its four ``.gz`` files
(``--from DIR``), e.g. Debian's package ``dataset-fashion-mnist``, which is used by default when
installed. Validation is always a seeded hold-out of the training data, so that model selection
never sees the test split.

Every problem the user can fix (unknown name, missing or corrupt files, failed download) is
raised as a :class:`DatasetError` with a one-line message that says what to do.

- :mod:`~sinreq.data.catalog`: the dataset names and :class:`DatasetError`;
- :mod:`~sinreq.data.checksums`: where the files live, their MD5 sums, verification;
- :mod:`~sinreq.data.readers`: CIFAR-10, SVHN and Fashion-MNIST parsed by torchvision;
- :mod:`~sinreq.data.fetch`: :func:`download` and the Fashion-MNIST import;
- :mod:`~sinreq.data.splits`: :class:`Splits`, the validation hold-out, class subsets;
- :mod:`~sinreq.data.digits` and :mod:`~sinreq.data.imagenet`: those two datasets' splits;
- :mod:`~sinreq.data.loaders`: :func:`build_splits` and :func:`make_loaders`.
"""

from __future__ import annotations

from sinreq.data.catalog import DATASETS, DatasetError
from sinreq.data.fetch import download
from sinreq.data.loaders import build_splits, make_loaders
from sinreq.data.splits import Splits

__all__ = ["DATASETS", "DatasetError", "Splits", "build_splits", "download", "make_loaders"]
