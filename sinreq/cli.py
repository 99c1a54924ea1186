"""The ``sinreq`` command line: ``train``, ``download``, ``report``, ``check``.

Every user error (bad flag value, unreadable config, missing data, a diverged run) ends with a
one-line message on stderr and exit code 2, without a traceback and without touching existing
outputs. ``SINREQ_DEBUG=1`` shows the traceback instead.

The commands belong to the study: they need the ``study`` extra (``pip install
'sinreq[study]'``); without it each ends with one line naming the extra and the missing module.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Top-level modules of the study extra's packages: a missing one means "install the extra".
STUDY_MODULES = frozenset(
    {
        "dvc",
        "matplotlib",
        "mlflow",
        "numpy",
        "pandas",
        "pydantic",
        "pytest_benchmark",
        "scipy",
        "sklearn",
        "statsmodels",
        "submitit",
        "torchvision",
        "tqdm",
        "yaml",
    }
)


def missing_study_module(err: ImportError) -> str | None:
    """The study-extra module whose absence raised ``err``, or None if it is another error."""
    name = (getattr(err, "name", None) or "").partition(".")[0]
    return name if isinstance(err, ModuleNotFoundError) and name in STUDY_MODULES else None


def study_extra_message(command: str, module: str) -> str:
    return (
        f"sinreq {command}: error: this command needs the study extra: "
        f"pip install 'sinreq[study]' (missing module: {module})"
    )


def _train(args: argparse.Namespace) -> int:
    from sinreq.config import configs_from_args
    from sinreq.launch import load_launcher, train_all

    train_all(configs_from_args(args), load_launcher(args.launcher_from))
    return 0


def _download(args: argparse.Namespace) -> int:
    from sinreq.data import download

    print(download(args.name, args.root, source=args.source))
    return 0


def _params(args: argparse.Namespace) -> int:
    from sinreq.profile import check_profile

    profile = check_profile(Path(args.file))
    if args.out:  # a stamp the pipeline's stages depend on: it changes only with the verdict
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("valid\n")
    print(f"{args.file}: profile {profile.profile!r} is valid")
    return 0


def _report(args: argparse.Namespace) -> int:
    from sinreq.report import report_command

    report_command(
        runs=[Path(p) for p in args.runs],
        out=Path(args.out),
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        reference=Path(args.reference) if args.reference else None,
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from sinreq.report import check_command

    return check_command(Path(args.results), Path(args.reference), profile=args.profile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sinreq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    try:
        from sinreq.config import add_train_arguments
    except ImportError as err:  # without the study extra: `train` only says what to install
        if missing_study_module(err) is None:
            raise
        train = sub.add_parser(
            "train", help="train one network in one configuration (study extra)", add_help=False
        )
        train.set_defaults(func=_train, missing=err)  # its arguments are not parsed
    else:
        train = sub.add_parser("train", help="train one network in one configuration")
        add_train_arguments(train)
        train.set_defaults(func=_train)

    download = sub.add_parser("download", help="download and verify a dataset")
    download.add_argument(
        "name", help="dataset name (cifar10, svhn, fashion_mnist; digits is embedded)"
    )
    download.add_argument("--root", default="data", help="folder to put the dataset in")
    download.add_argument(
        "--from",
        dest="source",
        default=None,
        help="fashion_mnist only: import the four IDX .gz files from this folder "
        "(default: /usr/share/datasets/fashion-mnist if installed, else download)",
    )
    download.set_defaults(func=_download)

    params = sub.add_parser("params", help="check a profile (params.yaml) whole, before training")
    params.add_argument("file", nargs="?", default="params.yaml", help="the profile to check")
    params.add_argument("--out", help="write the stamp 'valid' here when it is (for DVC)")
    params.set_defaults(func=_params)

    report = sub.add_parser("report", help="results, gap-closure tables and plots from runs")
    report.add_argument("runs", nargs="+", help="run folders (each with config.json, metrics.json)")
    report.add_argument("--out", default="reports", help="output folder")
    report.add_argument("--reference", help="reference YAML whose paper claims the summary shows")
    report.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow store")
    report.add_argument("--experiment", default="sinreq", help="MLflow experiment")
    report.set_defaults(func=_report)

    check = sub.add_parser("check", help="compare results with the paper and our references")
    check.add_argument("--results", default="reports/results.csv")
    check.add_argument("--reference", default="reports/paper_reference.yaml")
    check.add_argument("--profile", default=None, help="profile the results come from")
    check.set_defaults(func=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    from sinreq.registry import load_plugins

    try:
        load_plugins()  # before the parser: their options are flags of `sinreq train`
    except ValueError as err:
        print(f"sinreq: error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "missing", None) is None:
        args = parser.parse_args(argv)  # reports the unrecognized arguments
    try:
        if getattr(args, "missing", None) is not None:
            raise args.missing
        return args.func(args)
    except ImportError as err:
        module = missing_study_module(err)
        if module is None or os.environ.get("SINREQ_DEBUG"):
            raise
        print(study_extra_message(args.command, module), file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as err:  # one line, no traceback
        if os.environ.get("SINREQ_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"sinreq {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sinreq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
