"""Where the files of CIFAR-10, SVHN and Fashion-MNIST live under a root, their published MD5
sums, and the verification that every file a reader opens is present and intact."""

from __future__ import annotations

from pathlib import Path

from sinreq.data.catalog import TITLES, DatasetError

CIFAR_FOLDER = "cifar-10-batches-py"
SVHN_SPLITS = ("train", "test")
# torchvision.datasets.FashionMNIST's layout: the decompressed IDX files in ROOT/FashionMNIST/raw.
FASHION_FOLDER = Path("FashionMNIST") / "raw"
# MD5 of the decompressed IDX files, byte-identical upstream and in Debian. Debian recompressed
# the .gz files, so the .gz MD5s that torchvision publishes do not fit its copies.
_FASHION_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


def folder(name: str, root: Path) -> Path:
    """The folder under ``root`` that holds the files of ``name``."""
    if name == "cifar10":
        return root / CIFAR_FOLDER
    if name == "fashion_mnist":
        return root / FASHION_FOLDER
    return root


def expected_checksums(name: str) -> dict[str, str]:
    """File name -> published MD5 of every file that the reader of ``name`` opens (empty for
    digits and ImageNet)."""
    if name == "cifar10":  # the five training batches, the test batch and the label names
        from torchvision.datasets import CIFAR10  # only here: torchvision takes 0.4-2 s to import

        meta = [(CIFAR10.meta["filename"], CIFAR10.meta["md5"])]
        return dict(CIFAR10.train_list + CIFAR10.test_list + meta)
    if name == "svhn":
        from torchvision.datasets import SVHN

        return {SVHN.split_list[split][1]: SVHN.split_list[split][2] for split in SVHN_SPLITS}
    if name == "fashion_mnist":
        return dict(_FASHION_MD5)
    return {}  # digits and ImageNet: no published per-file checksums


def problems(name: str, root: Path) -> list[str]:
    """What is wrong with the files of ``name`` under ``root`` (empty when all are intact)."""
    from torchvision.datasets.utils import check_integrity

    where = folder(name, root)
    expected = expected_checksums(name)
    missing = [f for f in expected if not (where / f).is_file()]
    corrupt = [
        f for f in expected if f not in missing and not check_integrity(where / f, expected[f])
    ]
    found = []
    if missing:
        found.append("missing: " + ", ".join(missing))
    if corrupt:
        found.append("checksum mismatch: " + ", ".join(corrupt))
    return found


def verify(name: str, root: Path) -> None:
    """Raise DatasetError unless every file of ``name`` is present with its published MD5."""
    where = folder(name, root)
    fix = f"run: sinreq download {name} --root {root}"
    if not where.is_dir():
        raise DatasetError(f"{TITLES[name]} not found: {where} does not exist; {fix}")
    found = problems(name, root)
    if found:
        raise DatasetError(
            f"{TITLES[name]} files in {where} are missing or corrupt ({'; '.join(found)}); {fix}"
        )
