"""The ``sinreq`` command line: ``train``, ``download``, ``report``, ``check``, ``references``.

Every user error (bad flag value, unreadable config, missing data, a diverged run) ends with a
one-line message on stderr and exit code 2, without a traceback and without touching existing
outputs. ``SINREQ_DEBUG=1`` shows the traceback instead.

The commands belong to the study: they need the ``study`` extra (``pip install
'sinreq[study]'``); without it each ends with one line naming the extra and the missing module.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

# Separates two commands run one after the other in one process (see main).
THEN = "--then"

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


def _references(args: argparse.Namespace) -> int:
    from sinreq.report.claims import references_command

    rule = {k: getattr(args, k) for k in ("k", "floor", "cap") if getattr(args, k) is not None}
    write = Path(args.write) if args.write else None
    reruns = [Path(p) for p in args.rerun or []]
    return references_command(
        Path(args.results), profile=args.profile, write=write, reruns=reruns, **rule
    )


def _leaderboard(args: argparse.Namespace) -> int:
    from sinreq.report.leaderboard import leaderboard_command

    reference = Path(args.reference) if args.reference else None
    return leaderboard_command(Path(args.root), Path(args.out), reference, Path(args.profiles))


def _ui(args: argparse.Namespace) -> int:
    import yaml

    from sinreq import tracking

    port = tracking.check_ui_address(args.host, args.port)
    profile: dict = {}
    if args.tracking_uri is None or args.experiment is None:
        try:
            profile = yaml.safe_load(Path(args.params).read_text()) or {}
        except FileNotFoundError:
            profile = {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"cannot read {args.params}: {' '.join(str(err).split())}") from None
        if not isinstance(profile, dict):
            raise ValueError(f"{args.params}: allowed: a YAML mapping (a profile)")
    uri = args.tracking_uri or profile.get("tracking_uri") or "sqlite:///mlflow.db"
    experiment = args.experiment or profile.get("experiment") or "sinreq"
    experiment_id = tracking.ui_experiment_id(uri, experiment)
    view = tracking.write_ui_view(uri, experiment_id)
    url = tracking.runs_table_url(args.host, port, experiment_id, view)
    cmd = tracking.ui_command(uri, args.host, port)
    if args.dry_run:
        print(url)
        print(" ".join(cmd), file=sys.stderr)
        return 0
    return tracking.serve_ui(cmd, url, f"{tracking.ui_base_url(args.host, port)}/health")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sinreq",
        description=__doc__.splitlines()[0],
        epilog=f"COMMAND ... {THEN} COMMAND ...: the second runs after the first succeeded, in "
        "the same process (imports and the MLflow store paid once)",
    )
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
    download.add_argument(
        "--root", default="data", help="folder to put the dataset in (default: %(default)s)"
    )
    download.add_argument(
        "--from",
        dest="source",
        default=None,
        help="fashion_mnist only: import the four IDX .gz files from this folder "
        "(default: /usr/share/datasets/fashion-mnist if installed, else download)",
    )
    download.set_defaults(func=_download)

    params = sub.add_parser("params", help="check a profile (params.yaml) whole, before training")
    params.add_argument(
        "file", nargs="?", default="params.yaml", help="the profile to check (default: %(default)s)"
    )
    params.add_argument(
        "--out", help="write the stamp 'valid' here when it is, for DVC (default: none)"
    )
    params.set_defaults(func=_params)

    report = sub.add_parser("report", help="results, gap-closure tables and plots from runs")
    report.add_argument("runs", nargs="+", help="run folders (each with config.json, metrics.json)")
    report.add_argument("--out", default="reports", help="output folder (default: %(default)s)")
    report.add_argument(
        "--reference",
        help="reference YAML whose paper claims the summary shows (default: none, no claims)",
    )
    report.add_argument(
        "--tracking-uri", default="sqlite:///mlflow.db", help="MLflow store (default: %(default)s)"
    )
    report.add_argument(
        "--experiment", default="sinreq", help="MLflow experiment (default: %(default)s)"
    )
    report.set_defaults(func=_report)

    check = sub.add_parser("check", help="compare results with the paper and our references")
    check.add_argument(
        "--results",
        default="reports/results.csv",
        help="the results table `sinreq report` wrote (default: %(default)s)",
    )
    check.add_argument(
        "--reference",
        default="reports/paper_reference.yaml",
        help="the claims to judge: the paper's and our regression references "
        "(default: %(default)s)",
    )
    check.add_argument(
        "--profile",
        default=None,
        help="profile the results come from: claims scoped to others are NOT MEASURED "
        "(default: the single profile recorded in the results)",
    )
    check.set_defaults(func=_check)

    references = sub.add_parser(
        "references",
        help="a study's regression references (per configuration and arm) from its results.csv",
        description="Print, or --write into a reference file, one regression claim per "
        "configuration and arm of the study: the mean test accuracy of its final seeds, within "
        "clip(K * sd * sqrt(2 / n), FLOOR, CAP) points, sd = the arm's seed std over its n seeds "
        "(defaults: K 3, FLOOR 0.5, CAP 0.9, see sinreq.report.claims), or K * rerun_rms / "
        "sqrt(n) where larger, from measured reruns (--rerun).",
    )
    references.add_argument("results", help="the study's committed results.csv")
    references.add_argument("--profile", help="the study's profile (default: the single "
                            "profile recorded in the results)")  # fmt: skip
    references.add_argument("--write", metavar="REFERENCE", help="put the claims into this "
                            "reference file, replacing the profile's previous ones (default: "
                            "none, print them)")  # fmt: skip
    for option in ("k", "floor", "cap"):
        default = {"k": 3, "floor": 0.5, "cap": 0.9}[option]  # sinreq.report.claims REFERENCE_*
        references.add_argument(
            f"--{option}", type=float, help=f"{option.upper()} of the rule (default: {default})"
        )
    references.add_argument("--rerun", action="append", metavar="CSV", help="a measured rerun "
                            "of the study's runs (benchmarks/rerun_runs.py): an arm's tolerance "
                            "is at least K * (rms of its runs' moves) / sqrt(n); repeatable "
                            "(default: none)")  # fmt: skip
    references.set_defaults(func=_references)

    board = sub.add_parser(
        "leaderboard", help="the benchmark's leaderboard over every regime's results.csv"
    )
    board.add_argument("root", nargs="?", default="reports/benchmark",
                       help="folder of the regimes' reports, ROOT/<regime>/results.csv "
                       "(default: %(default)s)")  # fmt: skip
    board.add_argument("--out", default="reports/benchmark", help="where leaderboard.{md,csv,png} "
                       "go (default: %(default)s)")  # fmt: skip
    board.add_argument("--reference", default="reports/paper_reference.yaml",
                       help="claims shown beside SinReQ (default: %(default)s)")  # fmt: skip
    board.add_argument("--profiles", default="pipelines/benchmark", help="the regimes' profiles "
                       "(their not_applicable reasons; default: %(default)s)")  # fmt: skip
    board.set_defaults(func=_leaderboard)

    ui = sub.add_parser(
        "ui",
        help="the MLflow UI on the study's store, opened on its runs table",
        description="Start `mlflow server` on the store (Ctrl-C stops it) and print the link "
        "that opens the experiment's runs table (not the GenAI traces view).",
    )
    ui.add_argument("--tracking-uri", help="MLflow store (default: the profile's tracking_uri, "
                    "else sqlite:///mlflow.db)")  # fmt: skip
    ui.add_argument("--experiment", help="MLflow experiment (default: the profile's "
                    "experiment, else sinreq)")  # fmt: skip
    ui.add_argument("--params", default="params.yaml", help="the profile the defaults come "
                    "from (default: %(default)s)")  # fmt: skip
    ui.add_argument("--host", default="127.0.0.1", help="interface the server binds to "
                    "(default: %(default)s, this machine only)")  # fmt: skip
    ui.add_argument("--port", default="5000", help="port (default: %(default)s)")
    ui.add_argument("--dry-run", action="store_true", help="print the link and the server "
                    "command, start nothing (default: off)")  # fmt: skip
    ui.set_defaults(func=_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv``; ``A --then B`` runs B after A succeeded, in this process
    (a pipeline stage of two commands pays the imports and the MLflow store once, about 6 s)."""
    from sinreq.interrupts import handled

    argv = sys.argv[1:] if argv is None else argv
    commands: list[list[str]] = [[]]
    for token in argv:
        if token == THEN:
            commands.append([])
        else:
            commands[-1].append(token)
    with handled():  # Ctrl-C and SIGTERM: KeyboardInterrupt / Terminated, never inside a write
        for command in commands:
            code = _main(command)
            if code:
                return code
        return 0


def _main(argv: list[str]) -> int:
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
    except KeyboardInterrupt as stop:
        from sinreq.interrupts import Terminated

        terminated = isinstance(stop, Terminated)
        print(
            f"sinreq {args.command}: {'terminated' if terminated else 'interrupted'}",
            file=sys.stderr,
        )
        return 143 if terminated else 130


def run() -> None:
    """The ``sinreq`` command: exit with :func:`main`'s code."""
    code = main()
    # Python's last collections at exit walk every object torch and MLflow made: about 1 s a
    # process, 20 processes in a default dvc repro. Frozen objects are skipped; atexit handlers
    # and finalizers still run.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
