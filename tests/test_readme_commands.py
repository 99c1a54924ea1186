"""The commands the README and docs/ show still work.

Every ``sinreq ...`` and ``dvc ...`` command in a fenced code block of README.md and docs/*.md
(a line starting with it after an optional ``$ ``, or a segment of a ``&&`` chain) is parsed:
each ``sinreq`` subcommand and flag must exist, spelled in full (argparse would accept an
abbreviation), and each ``dvc`` command must parse with DVC's own parser, its ``-S`` keys naming
a parameter of params.yaml. The cheap ones, listed in ``RUN`` below, are also run for real in a
temporary folder on the embedded digits data, so a broken quick example fails CI. Commands that
need real datasets, GPUs or long runs are only parsed.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from sinreq.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Commands run for real: a prefix of the documented command -> flags appended to it (argparse:
# the last value wins), so that it stays cheap. Run in this order, in one temporary folder.
RUN = {
    "sinreq download digits --root data/digits": [],
    "sinreq params pipelines/tiny.yaml": [],
    "sinreq check --results reports/results.csv --reference reports/paper_reference.yaml": [],
    "sinreq train --model cifar10_convnet --dataset digits --quant.name lsq": [
        "--epochs",
        "1",
        "--max-steps",
        "2",
    ],
}

# What the run commands read from the repository, copied into the temporary folder.
RUN_INPUTS = ["pipelines", "reports/results.csv", "reports/paper_reference.yaml"]


def _fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^ {0,3}```[^\n]*\n(.*?)^ {0,3}```", text, flags=re.M | re.S)


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for every sinreq / dvc command in a fenced block, continuations joined,
    comments, pipes and the rest of a ``&&`` / ``;`` chain cut off."""
    found = []
    for doc in DOCS:
        for block in _fenced_blocks(doc.read_text()):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.strip().removeprefix("$ ")
                for segment in re.split(r"&&|;", line):
                    segment = segment.split("|")[0].split(" #")[0].strip().rstrip("&").strip()
                    if segment.startswith(("sinreq ", "dvc ")):
                        found.append((doc.relative_to(ROOT).as_posix(), " ".join(segment.split())))
    return found


COMMANDS = documented_commands()


def _tokens(command: str) -> list[str]:
    """The command's words; "[--from DIR]" marks an optional part: kept, without the brackets."""
    words = []
    for word in shlex.split(command):
        word = word.removeprefix("[")
        words.append(word[:-1] if word.endswith("]") and "[" not in word else word)
    return words


def _subparser(name: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert name in sub.choices, f"no subcommand 'sinreq {name}' (have {sorted(sub.choices)})"
    return parser, sub.choices[name]


def check_sinreq(command: str) -> None:
    argv = _tokens(command)[1:]
    parser, sub = _subparser(argv[0])
    known = {s for a in sub._actions for s in a.option_strings}
    for token in argv[1:]:
        flag = token.split("=", 1)[0]
        if flag.startswith("--"):
            assert flag in known, f"'sinreq {argv[0]}' has no flag {flag}"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            parser.parse_args(argv)
        except SystemExit as exit_:
            assert exit_.code == 0, f"sinreq {' '.join(argv)}: {err.getvalue().strip()}"


def _has_key(params: dict, dotted: str) -> bool:
    node = params
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if parts[:i] == ["regularizer", "options"]:  # a plugin's own options are free
            return True
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check_dvc(command: str) -> None:
    from dvc.cli import DvcParserError, parse_args

    argv = _tokens(command)[1:]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parse_args(argv)
        except (DvcParserError, SystemExit) as error:
            why = err.getvalue().strip() or "unknown command, flag or argument"
            raise AssertionError(f"dvc {' '.join(argv)} does not parse: {why}") from error
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in ("-S", "--set-param"):
            key = value.split("=", 1)[0]
            assert _has_key(params, key), f"dvc {' '.join(argv)}: params.yaml has no {key}"


def test_docs_show_commands():
    """The extraction finds the documented commands (an empty list would test nothing)."""
    commands = [c for _, c in COMMANDS]
    assert any(c.startswith("sinreq train ") for c in commands)
    assert "dvc repro" in commands
    for prefix in RUN:
        assert any(c.startswith(prefix) for c in commands), f"not documented any more: {prefix}"


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[f"{d}: {c}" for d, c in COMMANDS])
def test_documented_command_parses(doc, command):
    (check_sinreq if command.startswith("sinreq ") else check_dvc)(command)


@pytest.mark.slow
def test_cheap_documented_commands_run(tmp_path, monkeypatch):
    for name in RUN_INPUTS:
        source, target = ROOT / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for prefix, extra in RUN.items():
        command = next(c for _, c in COMMANDS if c.startswith(prefix))
        argv = [*_tokens(command)[1:], *extra]
        assert main(argv) == 0, f"failed: sinreq {' '.join(argv)}"
    assert (tmp_path / "data" / "digits").is_dir()
    assert (tmp_path / "runs" / "demo" / "metrics.json").is_file()
