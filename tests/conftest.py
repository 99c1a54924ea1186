"""Fixtures shared by the scale-out and pipeline tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest


def pytest_configure(config):
    """Under pytest-xdist every worker (and what it starts) trains with one thread: the workers
    share the cores. Set before the test modules import torch."""
    if hasattr(config, "workerinput"):
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = "1"


@pytest.fixture
def mlflow_server(tmp_path):
    """``mlflow server`` on 127.0.0.1 (sqlite backend, proxied artifacts); yields its URI. The
    server binds port 0 and its log names the port it got: no free port guessed, then lost."""
    log = tmp_path / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--workers",
        "1",
    ]
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no 8 job processes
        "MLFLOW_DISABLE_TELEMETRY": "true",  # no thread that edits os.environ (sinreq.tracking)
    }
    with log.open("w") as sink:  # its own session: stopping it stops uvicorn, its child, too
        server = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=sink, env=env, start_new_session=True
        )
    try:
        deadline, uri = time.monotonic() + 180, None
        while True:
            if uri is None and (found := re.search(r"running on (http://\S+)", log.read_text())):
                uri = found.group(1)
            if uri is not None:
                try:
                    urllib.request.urlopen(f"{uri}/health", timeout=2)
                    break
                except OSError:
                    pass
            assert server.poll() is None and time.monotonic() < deadline, (
                f"mlflow server did not start: {log.read_text()[-2000:]}"
            )
            time.sleep(0.5)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone if it failed
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
