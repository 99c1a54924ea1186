"""``sinreq download``: fetch CIFAR-10 and SVHN with torchvision, import Fashion-MNIST from a
folder of ``.gz`` files (Debian's package by default) or the web, copy the digits file; every
result is verified against its published checksums."""

from __future__ import annotations

from pathlib import Path

from sinreq.data.catalog import TITLES, DatasetError, check_name, one_line
from sinreq.data.checksums import (
    FASHION_FOLDER,
    SVHN_SPLITS,
    expected_checksums,
    folder,
    problems,
    verify,
)
from sinreq.data.digits import copy_digits
from sinreq.data.imagenet import imagenet_missing

# Where `apt-get install dataset-fashion-mnist` puts the four .gz files.
_FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def download(name: str, root: str | Path, source: str | Path | None = None) -> Path:
    """Fetch dataset ``name`` into ``root``, verify its checksums and return its folder.

    CIFAR-10 and SVHN are fetched with torchvision's own download functions from the URLs, and
    checked against the MD5 sums, that torchvision publishes; files already present and intact
    are not fetched again. Fashion-MNIST is decompressed from the four IDX ``.gz`` files in
    ``source`` (only allowed for it) or, without ``source``, in :data:`_FASHION_DEBIAN` when
    that exists, else downloaded with torchvision; either way its decompressed files are
    checked against :data:`~sinreq.data.checksums._FASHION_MD5`. ``digits`` ships with
    scikit-learn: its bundled ``digits.csv.gz`` is copied into ``root`` (the pipeline's
    prepared-data folder) and ``root`` is returned. ImageNet cannot be downloaded automatically
    (its licence requires each user to obtain it from image-net.org): a :class:`DatasetError`
    explains the expected layout.

    Raises:
        DatasetError: unknown name, ImageNet, ``source`` for another dataset than
            Fashion-MNIST, or a failed / corrupt download or import.
    """
    check_name(name)
    if source is not None and name != "fashion_mnist":
        raise DatasetError(
            f"a source folder (--from) is only supported for fashion_mnist, not {name}; "
            f"run: sinreq download {name} --root DIR"
        )
    root = Path(root).expanduser()
    if name == "digits":
        return copy_digits(root)
    if name == "imagenet":
        raise DatasetError(imagenet_missing(root))
    if problems(name, root):
        if name == "fashion_mnist":
            _get_fashion_mnist(root, None if source is None else Path(source).expanduser())
        else:
            _fetch_with_torchvision(name, root)
        verify(name, root)
    return folder(name, root)


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
            for split in SVHN_SPLITS:
                url, filename, md5 = SVHN.split_list[split]
                download_url(url, root, filename=filename, md5=md5)
    except (OSError, RuntimeError, EOFError, tarfile.TarError, http.client.HTTPException) as exc:
        raise DatasetError(
            f"could not download {TITLES[name]} into {root}: {one_line(exc)}; "
            "check the network connection and run the download again"
        ) from exc


def _get_fashion_mnist(root: Path, source: Path | None) -> None:
    """Put the Fashion-MNIST files in place: from ``source``, else Debian's copy, else the web."""
    if source is None and _FASHION_DEBIAN.is_dir():
        source = _FASHION_DEBIAN
    if source is None:
        _fetch_fashion_mnist(root)
    else:
        _import_fashion_mnist(source, root / FASHION_FOLDER)


def _import_fashion_mnist(source: Path, raw: Path) -> None:
    """Decompress the four IDX ``.gz`` files of ``source`` into ``raw``, verifying each."""
    expected = expected_checksums("fashion_mnist")
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
            f"cannot decompress Fashion-MNIST file {archive}: {one_line(exc)}"
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
    for filename, md5 in expected_checksums("fashion_mnist").items():
        path = root / FASHION_FOLDER / filename
        if path.is_file() and not check_integrity(path, md5):
            path.unlink()
    try:
        FashionMNIST(str(root), train=True, download=True)
    except (OSError, RuntimeError, EOFError, zlib.error, http.client.HTTPException) as exc:
        raise DatasetError(
            f"could not download Fashion-MNIST into {root}: {one_line(exc)}; either run "
            "apt-get install dataset-fashion-mnist and then this command again, or run: "
            f"sinreq download fashion_mnist --root {root} --from DIR_WITH_GZ_FILES"
        ) from exc
