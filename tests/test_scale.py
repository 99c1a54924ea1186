"""Scale-out on existing engines: torchrun DDP, the local / Slurm launchers, an MLflow server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sinreq.cli import main
from sinreq.config import resolve_run_folder

TINY = ["--model", "cifar10_convnet", "--dataset", "digits", "--batch-size", "64", "--lr", "0.05"]
TIME_KEYS = {"wall_time_s", "images_per_s"}
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _sinreq(*args: str, cwd: Path, launcher: str = "python") -> subprocess.CompletedProcess:
    cmd = [*(TORCHRUN if launcher == "torchrun" else [sys.executable]), "-m", "sinreq", *args]
    return subprocess.run(cmd, cwd=cwd, env=ONE_THREAD, capture_output=True, text=True)


def _metrics(out: Path) -> dict:
    """A run's metrics but timing; ``out`` may name a grid run without its ``-<hash>``."""
    metrics = json.loads((Path(resolve_run_folder(str(out))) / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIME_KEYS}


def _runs(uri: str, experiment: str = "sinreq"):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment])


@pytest.mark.slow
def test_torchrun_two_processes_match_one_and_resume_after_sigkill(tmp_path):
    args = [*TINY, "--quant.name", "fp", "--epochs", "8", "--device", "cpu"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    one = _sinreq("train", *args, "--out", "one", "--tracking-uri", uri, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _sinreq(
        "train", *args, "--out", "two", "--tracking-uri", uri, cwd=tmp_path, launcher="torchrun"
    )
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("epoch 8/8") == 1  # rank 0 alone reports
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["world_size"] == 2 and config["batch_size"] == 64  # the global batch
    assert abs(_metrics(tmp_path / "two")["test_acc"] - _metrics(tmp_path / "one")["test_acc"]) < 5
    runs = _runs(uri)
    assert sorted(runs["tags.world_size"]) == ["1", "2"] and set(runs["status"]) == {"FINISHED"}

    # kill the whole torchrun job after its first checkpoint, then rerun the same command
    cmd = [
        *TORCHRUN,
        "-m",
        "sinreq",
        "train",
        *args,
        "--out",
        "killed",
        "--tracking-uri",
        uri,
    ]
    job = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=ONE_THREAD,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    ended = job.poll()
    with contextlib.suppress(ProcessLookupError):  # the whole job, also when the wait failed
        os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert checkpoint.exists(), (
        "no first checkpoint within 120 s"
        if ended is None
        else f"the run ended (exit code {ended}) before its first checkpoint"
    )
    assert not (tmp_path / "killed" / "metrics.json").exists()  # it was interrupted
    again = _sinreq(
        "train", *args, "--out", "killed", "--tracking-uri", uri, cwd=tmp_path, launcher="torchrun"
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert _metrics(tmp_path / "killed") == _metrics(tmp_path / "two")


def test_torchrun_refuses_a_batch_that_does_not_split(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")
    argv = ["train", *TINY, "--quant.name", "fp", "--epochs", "1", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--batch_size 64 does not split over 3 processes" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_four_concurrent_runs_against_a_server_match_inline_under_a_parent(tmp_path, mlflow_server):
    (tmp_path / "params.yaml").write_text("launcher: {kind: local, workers: 4}\n")
    grid = [
        *TINY,
        "--quant.name",
        "wrpn",
        "--quant.bits",
        "3",
        "--epochs",
        "2",
        "--grid",
        "seed=0,1,2,3",
    ]
    local = _sinreq(
        "train",
        *grid,
        "--out",
        "local",
        "--tracking-uri",
        mlflow_server,
        "--launcher-from",
        "params.yaml",
        cwd=tmp_path,
    )
    assert local.returncode == 0, local.stderr[-2000:]
    inline = _sinreq(
        "train",
        *grid,
        "--out",
        "inline",
        "--tracking-uri",
        mlflow_server,
        "--experiment",
        "inline",
        cwd=tmp_path,
    )
    assert inline.returncode == 0, inline.stderr[-2000:]

    for seed in range(4):
        assert _metrics(tmp_path / "local" / f"seed{seed}") == _metrics(
            tmp_path / "inline" / f"seed{seed}"
        )
    runs = _runs(mlflow_server)
    parent = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parent) == 1 and len(children) == 4
    assert set(children["tags.mlflow.parentRunId"]) == set(parent["run_id"])
    assert set(runs["status"]) == {"FINISHED"}
    accs = [_metrics(tmp_path / "local" / f"seed{s}")["test_acc"] for s in range(4)]
    assert parent["metrics.test_acc_mean"].iloc[0] == pytest.approx(sum(accs) / 4)
    assert parent["metrics.test_acc_n"].iloc[0] == 4
    assert "database is locked" not in local.stderr


def test_fan_out_refuses_a_sqlite_store(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("launcher: {kind: local, workers: 2}\n")
    argv = [
        "train",
        *TINY,
        "--quant.name",
        "fp",
        "--epochs",
        "1",
        "--grid",
        "seed=0,1",
        "--out",
        str(tmp_path / "g"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'm.db'}",
        "--launcher-from",
        str(tmp_path / "params.yaml"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "launcher.kind=local with tracking_uri=sqlite" in err
    assert "allowed: an http:// MLflow server" in err


def test_unknown_launcher_kind_is_one_line(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("launcher: {kind: ray}\n")
    argv = [
        "train",
        *TINY,
        "--quant.name",
        "fp",
        "--out",
        str(tmp_path / "r"),
        "--launcher-from",
        str(tmp_path / "params.yaml"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'ray'" in err and "inline" in err


def test_slurm_launcher_submits_one_array_with_the_resources_asked(tmp_path, monkeypatch):
    from sinreq.config import TrainConfig
    from sinreq.launch import Launcher, submit_slurm

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 42"\n'
    )
    sbatch.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it; never run
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    launcher = Launcher.model_validate(
        {
            "kind": "slurm",
            "log_folder": str(tmp_path / "logs"),
            "slurm": {
                "partition": "gpu",
                "time_min": 90,
                "cpus_per_task": 6,
                "gpus_per_node": 2,
                "tasks_per_node": 2,
                "array_parallelism": 2,
            },
        }
    )
    cfgs = [
        TrainConfig(model="resnet20", dataset="digits", out=str(tmp_path / "q" / f"seed{s}"))
        for s in range(3)
    ]
    jobs = submit_slurm(launcher, cfgs)
    assert [job.job_id for job in jobs] == ["42_0", "42_1", "42_2"]
    script = (tmp_path / "submitted.sh").read_text()
    for line in (
        "--array=0-2%2",
        "--partition=gpu",
        "--time=90",
        "--cpus-per-task=6",
        "--gpus-per-node=2",
        "--ntasks-per-node=2",
        "--job-name=sinreq-q",
    ):
        assert f"#SBATCH {line}\n" in script, line


def test_parent_summary_of_a_tuned_grid_against_scipy():
    import numpy as np
    from scipy import stats

    from sinreq.config import TrainConfig
    from sinreq.launch import grid_summary

    q = {2: 90.0, 0: 91.0, 1: 92.0}  # seed -> test accuracy, listed in another seed order
    qs = {0: 93.0, 1: 92.5, 2: 91.0}

    def run(lam, s, a):
        cfg = TrainConfig(
            quant={"name": "dorefa"}, regularizer={"lambda": lam}, model="resnet20", out="x", seed=s
        )
        return cfg, {"test_acc": a}

    baseline = [run(0.0, s, a) for s, a in q.items()]
    metrics, tags = grid_summary(
        baseline, {"sinreq": (0.1, [run(0.1, s, a) for s, a in qs.items()])}
    )
    # pairs are matched by seed: seed 0 -> (91, 93), seed 1 -> (92, 92.5), seed 2 -> (90, 91)
    t = stats.ttest_rel([93, 92.5, 91], [91, 92, 90])
    assert metrics["gain_mean_sinreq"] == pytest.approx(np.mean([2.0, 0.5, 1.0]))
    assert metrics["gain_p_sinreq"] == pytest.approx(t.pvalue)
    assert metrics["test_acc_mean_q"] == pytest.approx(91.0)
    assert metrics["test_acc_std_sinreq"] == pytest.approx(np.std(list(qs.values()), ddof=1))
    assert metrics["test_acc_n_q"] == 3 and metrics["lambda_chosen_sinreq"] == 0.1
    assert tags == {"verdict_uncorrected_sinreq": "gain" if t.pvalue < 0.05 else "no difference"}
