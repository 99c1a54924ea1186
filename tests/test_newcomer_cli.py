"""Issue 18, item 6: what the command line tells a newcomer: every flag's default and allowed
values in ``--help``, a final line after a run and after a grid, a resume and an interruption
that say so, and epoch lines of a grid that name their run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sinreq.cli import build_parser, main

TINY = ["--model", "cifar10_convnet", "--dataset", "digits", "--max-steps", "2",
        "--batch-size", "64", "--on-collapse", "continue"]  # fmt: skip


def _subparser(name: str):
    parser = build_parser()
    (sub,) = (a for a in parser._subparsers._group_actions if hasattr(a, "choices"))
    return sub.choices[name]


def _help_of(name: str) -> dict[str, str]:
    """Each option of ``sinreq <name>`` -> its help text as ``--help`` shows it (one line)."""
    shown = {}
    for action in _subparser(name)._actions:
        if action.dest == "help":
            continue
        if action.help is None:
            shown[action.option_strings[0] if action.option_strings else action.dest] = ""
            continue
        text = action.help % {"default": action.default} if "%(" in action.help else action.help
        shown[action.option_strings[0] if action.option_strings else action.dest] = text
    return shown


def _joined(text: str) -> str:
    return " ".join(text.split())  # the wrapped lines of --help joined


def _flag_help(flag: str) -> str:
    """The help of ``sinreq train``'s ``flag``, checked to be shown whole by ``--help``."""
    train = _subparser("train")
    (action,) = (a for a in train._actions if flag in a.option_strings)
    assert _joined(action.help) in _joined(train.format_help())
    return action.help


@pytest.mark.parametrize(
    "flag, default, allowed",
    [
        ("--quant.name", "fp", ["fp", "dorefa", "lsq", "wrpn"]),
        ("--quant.first-last", "8bit", ["fp", "8bit", "quantize"]),
        ("--regularizer.name", "sinreq", ["binreg", "dampen", "kure", "msqe", "sinreq"]),
        ("--regularizer.schedule", "none", ["constant", "cosine", "tanh", "warmup"]),
        ("--regularizer.options.domain", "normalized", ["normalized", "latent"]),
        ("--device", "auto", ["auto", "cpu", "cuda"]),
        ("--on-collapse", "stop", ["stop", "continue"]),
        ("--phase", "none", ["baseline", "tune", "final"]),
    ],
)
def test_train_help_shows_default_and_allowed_values(flag, default, allowed):
    shown = _joined(_flag_help(flag))
    assert f"(default {default}; allowed: {', '.join(allowed)}" in shown
    usage = _joined(_subparser("train").format_usage())
    assert f"[{flag} {{{','.join(allowed)}}}]" in usage  # the metavar, as argparse shows choices


def test_every_train_flag_shows_its_default():
    for action in _subparser("train")._actions:
        if action.dest == "help":
            continue
        assert action.help and ("default" in action.help or "required" in action.help), (
            action.option_strings
        )
    helps = _help_of("train")
    assert "(required)" in helps["--model"] and "(required)" in helps["--out"]
    assert "(default none" in helps["--init-from"]
    assert "(default false" in helps["--compile"] and "(default true" in helps["--amp"]


def test_other_subcommands_options_have_help_with_defaults():
    from sinreq.report.claims import REFERENCE_CAP, REFERENCE_FLOOR, REFERENCE_K

    for command in ("download", "params", "report", "check", "references", "leaderboard"):
        for option, text in _help_of(command).items():
            assert text, f"sinreq {command} {option} has no help"
            if option.startswith("--"):
                assert "default" in text, f"sinreq {command} {option}: no default shown"
    check = _help_of("check")
    assert "reports/results.csv" in check["--results"]
    assert "reports/paper_reference.yaml" in check["--reference"]
    refs = _help_of("references")
    assert f"default: {REFERENCE_K:g}" in refs["--k"]
    assert f"default: {REFERENCE_FLOOR:g}" in refs["--floor"]
    assert f"default: {REFERENCE_CAP:g}" in refs["--cap"]


def test_a_plugin_regularizer_is_listed_in_the_help(monkeypatch, capsys):
    from sinreq import registry
    from sinreq.regularizers import REGULARIZERS

    path = str(Path(__file__).resolve().parents[1] / "examples" / "my_regularizer.py")
    monkeypatch.setenv("SINREQ_PLUGINS", path)
    try:
        with pytest.raises(SystemExit) as done:
            main(["train", "--help"])
        assert done.value.code == 0
        shown = _joined(capsys.readouterr().out)
        assert _joined(_flag_help("--regularizer.name")) in shown
        assert "allowed: binreg, dampen, kure, l1grid, msqe, sinreq" in shown
        assert "l1grid" in _flag_help("--regularizer.options.power")  # its own option
    finally:
        REGULARIZERS._items.pop("l1grid", None)
        registry._loaded.discard(path)


# -- runs ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    import mlflow

    db = tmp_path_factory.mktemp("mlflow") / "m.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def uri(tmp_path, empty_store, monkeypatch) -> str:
    shutil.copy(empty_store, tmp_path / "m.db")
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'm.db'}"


def test_a_run_ends_with_its_test_accuracy_folder_and_mlflow_run(tmp_path, uri, capsys):
    import mlflow

    out = tmp_path / "r"
    argv = ["train", *TINY, "--epochs", "1", "--tracking-uri", uri, "--out", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("epoch 1/1  ce ")  # a single run's lines stay unprefixed
    mlflow.set_tracking_uri(uri)
    (run_id,) = mlflow.search_runs(experiment_names=["sinreq"])["run_id"]
    acc = mlflow.get_run(run_id).data.metrics["test_acc"]
    assert lines[-1] == (
        f"done: test accuracy {acc:.2f} %; folder {out}; MLflow run {run_id} in experiment "
        f"sinreq ({uri})"
    )
    assert main(argv) == 0  # a finished run says so, and its result again
    captured = capsys.readouterr()
    assert "finished run, nothing to do" in captured.err
    assert captured.out.strip().splitlines() == [lines[-1]]


def test_interrupted_then_resumed_runs_say_so(tmp_path, uri, capsys, monkeypatch):
    import sinreq.train

    out = tmp_path / "r"
    argv = ["train", *TINY, "--epochs", "2", "--tracking-uri", uri, "--out", str(out)]
    real, calls = sinreq.train.run_epoch, []

    def interrupted_second(run, epoch):
        calls.append(epoch)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(run, epoch)

    monkeypatch.setattr(sinreq.train, "run_epoch", interrupted_second)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert (
        f"interrupted: checkpoint of epoch 1 of 2 kept in {out}; rerun the same command to resume"
        in err
    )
    monkeypatch.setattr(sinreq.train, "run_epoch", real)
    # another store's experiment left active in this process (as an earlier run or a notebook
    # leaves it): MLflow checks a resumed run against it
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")
    mlflow.create_experiment("first")
    mlflow.set_experiment("second")
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"resuming {out} from epoch 1 of 2 (checkpoint {out / 'checkpoint.pt'})" in captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("epoch 2/2  ce ") and lines[-1].startswith("done: test accuracy")


def test_sigterm_is_an_interruption_that_keeps_the_checkpoint(tmp_path, uri):
    """Slurm's time limit and ``kill`` send SIGTERM: the run says what it kept, exits 143
    without a traceback, and the same command resumes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "t"
    argv = ["train", *TINY, "--max-steps", "1", "--epochs", "40", "--tracking-uri", uri,
            "--out", str(out)]  # fmt: skip
    cmd = [sys.executable, "-m", "sinreq", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and job.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "sinreq train: terminated" in err
    kept = rf"interrupted: checkpoint of epoch \d+ of 40 kept in {re.escape(str(out))}"
    assert re.search(kept, err)
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {out} from epoch" in resumed.stderr


def test_a_signal_inside_a_write_waits_for_its_end():
    """A signal that lands in a deferred section (an MLflow call, a checkpoint) is raised where
    the section ends, never inside it; in an interruptible part it stops at once."""
    import os
    import signal

    from sinreq.interrupts import Terminated, deferred, handled, interruptible

    done = []
    with handled():
        with pytest.raises(Terminated):
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("write")
        with pytest.raises(KeyboardInterrupt):
            with deferred():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("checkpoint")
                with interruptible():  # the pending Ctrl-C is raised here
                    done.append("epoch")
        with pytest.raises(Terminated):
            with deferred(), interruptible():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("not reached")
    assert done == ["write", "checkpoint"]


def test_grid_epoch_lines_name_their_run_and_the_grid_ends_with_its_summary(tmp_path, uri, capsys):
    out = tmp_path / "g"
    argv = ["train", *TINY, "--epochs", "1", "--grid", "seed=0,1", "--tracking-uri", uri]
    assert main([*argv, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    epochs = [ln for ln in lines if " epoch " in ln]
    assert [ln.split(" epoch ")[0] for ln in epochs] == ["[seed0]", "[seed1]"]
    done = [ln for ln in lines if "] done: test accuracy " in ln]
    assert [ln.split()[0] for ln in done] == ["[seed0]", "[seed1]"]
    assert lines[-1].startswith(f"grid done: 2 runs; summary {out / 'grid.json'}; MLflow parent")


def test_tuning_grid_names_its_phase_and_the_lambda_chosen(tmp_path, uri, capsys):
    out = tmp_path / "t"
    argv = ["train", *TINY, "--epochs", "1", "--quant.name", "wrpn", "--regularizer.name",
            "msqe", "--tune-lambdas", "0,0.1", "--tune-seeds", "1", "--grid", "seed=0",
            "--tracking-uri", uri, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "[tune/seed1-lambda0.1] epoch 1/1  ce " in "\n".join(lines)
    assert any(
        ln.startswith("[tune/seed1-lambda0] done: test accuracy not read: tuning run")
        for ln in lines
    )
    assert any(ln.startswith("[final/seed0-lambda0.1] done: test accuracy ") for ln in lines)
    assert re.search(
        rf"^grid done: 4 runs; summary {re.escape(str(out / 'grid.json'))}; lambda chosen on "
        rf"validation: msqe 0.1 \({re.escape(str(out / 'lambda_choice.json'))}\); MLflow parent",
        lines[-1],
    )
