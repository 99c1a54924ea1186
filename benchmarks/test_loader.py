"""Data-loader throughput: one epoch of the training loader, images per second.

The loaders are the training path's: ``sinreq.data.build_splits(name, root)`` and
``make_loaders(splits, 128, seed=0)`` (``workers=0``, as ``sinreq train`` defaults), one round =
one pass over the train loader. ``extra_info["images_per_s"]`` is the epoch's size over the
median round time; ``ratios.py`` sets it beside the training step's images per second.

``digits``
    scikit-learn's digits (1,294 training images after the test and validation hold-outs),
    held in memory as one tensor.
``cifar10`` (generated)
    a ``cifar-10-batches-py`` folder written to a temporary directory in the real format:
    pickled dicts with ``'data'`` (uint8, N x 3072) and ``'labels'``, 5 x 1,000 training
    and 1,000 test images (4,500 in the train split), and ``batches.meta``. Real CIFAR files are
    checked against torchvision's published MD5 sums before they are read; here the public
    ``build_splits`` path is kept and, as ``tests/test_data.py`` does, torchvision's MD5 tables
    (``CIFAR10.train_list`` / ``test_list`` / ``meta``) are monkeypatched, for the duration of
    the test only, to the generated files' sums. Once with the training augmentation (random
    crop with padding 4 and horizontal flip, per image) and once without.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import BATCH, rounds

from sinreq.data import build_splits, make_loaders

CIFAR_PER_BATCH = 1000


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "batch_label": name,
            "labels": rng.integers(0, 10, CIFAR_PER_BATCH).tolist(),
            "data": rng.integers(0, 256, (CIFAR_PER_BATCH, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{k}.png" for k in range(CIFAR_PER_BATCH)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": [f"class{k}" for k in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def trust_generated_cifar(monkeypatch, root: Path) -> None:
    """Point torchvision's CIFAR-10 MD5 table at the generated files (this test only)."""
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    train = [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
    monkeypatch.setattr(CIFAR10, "train_list", train)
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})


def bench_epoch(benchmark, splits, dataset: str, augment: bool, base_rounds: int) -> None:
    train, _, _ = make_loaders(splits, BATCH, seed=0)
    images = len(splits.train)

    def epoch() -> None:
        seen = 0
        for x, _ in train:
            seen += x.shape[0]
        assert seen == images

    benchmark.group = "loader"
    benchmark.extra_info.update(
        {"kind": "loader", "dataset": dataset, "augment": augment, "images": images}
    )
    benchmark.pedantic(epoch, rounds=rounds(base_rounds), warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = images / benchmark.stats.stats.median


def test_loader_digits(benchmark, tmp_path):
    splits = build_splits("digits", tmp_path)
    bench_epoch(benchmark, splits, "digits", False, 20)


@pytest.mark.parametrize("augment", [True, False], ids=["augment", "plain"])
def test_loader_cifar10_generated(benchmark, cifar_root, monkeypatch, augment):
    trust_generated_cifar(monkeypatch, cifar_root)
    splits = build_splits("cifar10", cifar_root, augment=augment)
    assert len(splits.train) == round(5 * CIFAR_PER_BATCH * 0.9)
    bench_epoch(benchmark, splits, "cifar10-generated", augment, 5)
