"""Parallel runs that log the same dataset to one MLflow server at the same instant all succeed."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest

WORKERS, ROUNDS = 8, 5
PRELOAD = [
    "sinreq.tracking",
    "torchvision.datasets",
    "mlflow.tracking.fluent",
    "mlflow.tracing",
    "git",
]


def _log_in_step(uri: str, out: str, barrier, rank: int, results) -> None:
    """Each round: a fresh experiment and run, then the dataset logged when every worker is
    ready (the barrier releases them together)."""
    from sinreq.config import TrainConfig
    from sinreq.tracking import log_dataset_input, start_mlflow_run

    for round_ in range(ROUNDS):
        cfg = TrainConfig(
            model="cifar10_convnet",
            dataset="digits",
            out=f"{out}/r{round_}w{rank}",
            tracking_uri=uri,
            experiment=f"race{round_}",
        )
        released = False
        try:
            with start_mlflow_run(cfg, None):
                barrier.wait(120)
                released = True
                log_dataset_input(cfg)
            results.put((round_, rank, "ok"))
        except Exception as err:
            if not released:
                barrier.abort()  # the others would wait for this worker in vain
            results.put((round_, rank, f"{type(err).__name__}: {err}"))


@pytest.mark.slow
def test_workers_logging_one_dataset_at_once_all_succeed(tmp_path, mlflow_server):
    import mlflow

    # workers forked from one process that imported once what a run imports (torchvision for
    # the dataset's checksums, git for MLflow's tags): 8 imports at once take minutes on 2 cores
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*PRELOAD, __name__])
    barrier, results = context.Barrier(WORKERS), context.Queue()
    args = (mlflow_server, str(tmp_path), barrier)
    workers = [
        context.Process(target=_log_in_step, args=(*args, rank, results), daemon=True)
        for rank in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in range(WORKERS * ROUNDS)]
    for worker in workers:
        worker.join(60)
    failed = [f"round {r} worker {w}: {out}" for r, w, out in outcomes if out != "ok"]
    assert not failed, f"{len(failed)} of {len(outcomes)} failed:\n" + "\n".join(failed)

    client = mlflow.MlflowClient(mlflow_server)
    for round_ in range(ROUNDS):
        experiment = client.get_experiment_by_name(f"race{round_}")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == WORKERS and {r.info.status for r in runs} == {"FINISHED"}
        inputs = [d.dataset for r in runs for d in r.inputs.dataset_inputs]
        assert len(inputs) == WORKERS and len({(d.name, d.digest) for d in inputs}) == 1


def test_mlflow_telemetry_is_off_where_runs_log():
    """Its thread edits os.environ while requests reads it (a KeyError that killed a run)."""
    code = (
        "import sinreq.tracking; "
        "from mlflow.telemetry.utils import is_telemetry_disabled; print(is_telemetry_disabled())"
    )
    # as in a user's shell: no pytest or CI variable (either turns MLflow's telemetry off itself)
    unset = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTEST_CURRENT_TEST", "CI")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"
