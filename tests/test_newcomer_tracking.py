"""`sinreq train --tracking-uri X`: a bad URI is one line, exit 2, before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from sinreq import tracking
from sinreq.tracking import PROBE_TIMEOUT_S, check_tracking_uri

TINY = ["--model", "cifar10_convnet", "--dataset", "digits", "--epochs", "1", "--device", "cpu"]


def _train(cwd: Path, uri: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SINREQ_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "sinreq.cli", "train", *TINY, "--out", "run", *extra]
        + ["--tracking-uri", uri],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


BAD_URIS = {
    "unknown scheme": ("foo://bar", "unknown scheme 'foo'"),
    "bare path": ("mlflow.db", "a bare path is not a tracking URI"),
    "missing sqlite folder": ("sqlite:///{tmp}/missing/dir/mlflow.db", "does not exist"),
    "unreachable server": ("http://127.0.0.1:9", "cannot reach 127.0.0.1:9"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_URIS))
def test_bad_tracking_uri_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    uri, expected = BAD_URIS[case]
    uri = uri.format(tmp=tmp_path)
    proc = _train(tmp_path, uri)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"sinreq train: error: --tracking-uri {uri!r}: "), lines[0]
    assert expected in lines[0] and "Traceback" not in proc.stderr
    if case in ("unknown scheme", "bare path"):
        assert "allowed: sqlite:///PATH" in lines[0] and "http(s)://" in lines[0]
    assert not (tmp_path / "run").exists()  # no run folder, config.json or layers.json
    assert not (tmp_path / "missing").exists()  # the sqlite folder is not created either
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nor mlflow.db, mlruns, data


def test_bad_uri_of_a_grid_writes_no_grid_folder(tmp_path, monkeypatch, capsys):
    """A grid writes its folder (MLflow parent run, index.json) before its runs: checked first."""
    from sinreq.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"
    argv = ["train", *TINY, "--grid", "seed=0,1", "--out", "grid", "--tracking-uri", uri]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "of the sqlite store does not exist" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_http_probe_is_one_request_with_a_timeout(monkeypatch):
    """The server probe answers within seconds: one request bounded by a timeout, not MLflow's
    retry loop."""
    calls = []

    def refuse(url, timeout=None, **kwargs):
        calls.append((url, timeout))
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(tracking.urllib.request, "urlopen", refuse)
    with pytest.raises(ValueError, match=r"cannot reach example\.org:5000 within 5 s"):
        check_tracking_uri("http://example.org:5000/prefix")
    assert calls == [("http://example.org:5000/prefix/health", PROBE_TIMEOUT_S)]
    assert 0 < PROBE_TIMEOUT_S < 10


def test_database_probe_is_one_connection_with_a_timeout(monkeypatch):
    calls = []

    def refuse(address, timeout=None, **kwargs):
        calls.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(tracking.socket, "create_connection", refuse)
    with pytest.raises(ValueError, match=r"cannot reach db:5432 within 2 s \(timed out\)"):
        check_tracking_uri("postgresql+psycopg2://u:p@db/mlflow", timeout=2)
    assert calls == [(("db", 5432), 2)]


def test_a_server_that_answers_any_status_is_up(monkeypatch):
    def not_found(url, timeout=None, **kwargs):
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)

    monkeypatch.setattr(tracking.urllib.request, "urlopen", not_found)
    check_tracking_uri("https://mlflow.example.org")


@pytest.mark.parametrize(
    "uri",
    ["sqlite:///mlflow.db", "sqlite:///{tmp}/mlflow.db", "file:{tmp}/mlruns", "databricks"],
)
def test_good_uris_pass_and_create_nothing(tmp_path, monkeypatch, uri):
    monkeypatch.chdir(tmp_path)
    check_tracking_uri(uri.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("", "a bare path"),
        ("./mlruns", "a bare path"),
        ("/abs/mlflow.db", "a bare path"),
        ("sqlite://", "three slashes"),
        ("sqlite:///:memory:", "in-memory"),
        ("http://host:port", "Port could not be cast"),
        ("http:///path", "no host"),
        ("ftp://host/x", "unknown scheme 'ftp'"),
    ],
)
def test_bad_uris_name_the_value_and_what_is_allowed(uri, expected):
    with pytest.raises(ValueError) as info:
        check_tracking_uri(uri)
    msg = str(info.value)
    assert msg.startswith(f"--tracking-uri {uri!r}: ") and expected in msg
    assert "allowed" in msg and "\n" not in msg
