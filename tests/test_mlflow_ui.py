"""The MLflow UI on runs: parent runs that carry their grid's parameters, dataset and a distinct
name, and `sinreq ui`, which starts `mlflow server` and prints the link to the runs table."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sinreq import tracking
from sinreq.cli import main
from sinreq.config import TrainConfig
from sinreq.tracking import parent_params, parent_run_name, runs_table_url

TINY = ["--model", "cifar10_convnet", "--dataset", "digits", "--epochs", "1", "--max-steps", "1",
        "--batch-size", "32", "--device", "cpu", "--on-collapse", "continue"]  # fmt: skip
EXPERIMENT = "ui-test"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    """A store holding three tiny grids laid out as the pipeline lays them out: the FP
    baseline, its continuation, and DoReFa W3A3 at lambda 0 and 1 (one seed)."""
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = root / "runs" / "t"
    common = [*TINY, "--data-dir", str(root / "data"), "--tracking-uri", uri]
    common += ["--experiment", EXPERIMENT, "--profile", "t"]
    fp = runs / "fp" / "cifar10_convnet"
    grids = [
        ["--quant.name", "fp", "--grid", "seed=0,1", "--stage", "fp", "--out", str(fp)],
        ["--quant.name", "fp", "--grid", "seed=0,1", "--stage", "fp", "--lr", "0.01"]
        + ["--init-from", f"{fp}/seed{{seed}}", "--out", str(runs / "fpcont" / "cifar10_convnet")],
        ["--quant.name", "dorefa", "--quant.bits", "3", "--quant.act-bits", "3", "--stage", "quant"]
        + ["--grid", "regularizer.lambda=0,1", "--regularizer.warmup-epochs", "1"]
        + ["--init-from", f"{fp}/seed0", "--out", str(runs / "q" / "cifar10_convnet-dorefa-w3")],
    ]
    for grid in grids:
        assert main(["train", *common, *grid]) == 0
    return uri, runs


def _parents(uri: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT])
    return runs[runs["tags.mlflow.parentRunId"].isna()].set_index("tags.mlflow.runName")


def test_parent_runs_have_distinct_names_and_the_grid_params(store):
    uri, _ = store
    parents = _parents(uri)
    assert sorted(parents.index) == [
        "fp cifar10_convnet",
        "fpcont cifar10_convnet",
        "q cifar10_convnet dorefa w3a3",
    ]
    q = parents.loc["q cifar10_convnet dorefa w3a3"]
    shared = {"model": "cifar10_convnet", "dataset": "digits", "quant.name": "dorefa"}
    shared |= {"quant.bits": "3", "quant.act_bits": "3", "regularizer.name": "sinreq"}
    shared |= {"profile": "t", "stage": "quant", "seed": "0", "epochs": "1"}
    assert {k: q[f"params.{k}"] for k in shared} == shared
    assert q["params.regularizer.lambda"] == "0.0,1.0"  # what the grid varies: its values
    assert q["tags.sinreq.grid_varies"] == "regularizer.lambda"
    fp = parents.loc["fp cifar10_convnet"]
    assert (fp["params.quant.name"], fp["params.seed"], fp["params.stage"]) == ("fp", "0,1", "fp")
    for run_folder_param in ("out", "init_from", "parent_run_id"):  # each run's own
        assert (
            f"params.{run_folder_param}" not in parents
            or parents[f"params.{run_folder_param}"].isna().all()
        )
    # the summary metrics finish_parent_run logs, on every parent
    assert parents["metrics.test_acc_mean"].notna().all()
    assert (parents["metrics.test_acc_n"] == 2).all()


def test_parent_runs_log_their_dataset_like_their_children(store):
    from mlflow import MlflowClient

    uri, _ = store
    client = MlflowClient(uri)
    for run_id in _parents(uri)["run_id"]:
        run = client.get_run(run_id)
        [given] = run.inputs.dataset_inputs
        assert given.dataset.name == "digits" and len(given.dataset.digest) == 8
        assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}


def test_rerun_keeps_the_parent_and_fills_in_what_an_old_parent_lacks(store, tmp_path):
    """A parent made before parameters were logged (its old name, no params) gets them, and
    its name, on the next rerun of the grid; the parent itself is kept."""
    from mlflow import MlflowClient

    uri, runs = store
    client = MlflowClient(uri)
    cfg = TrainConfig(model="cifar10_convnet", out=str(tmp_path / "g" / "seed0"), tracking_uri=uri)
    cfg = cfg.model_copy(update={"experiment": EXPERIMENT})
    folder = tmp_path / "old" / "grid"
    old = client.create_run(tracking.experiment_id(uri, EXPERIMENT), run_name="grid")
    folder.mkdir(parents=True)
    kept = {"run_id": old.info.run_id, "tracking_uri": uri}
    (folder / "mlflow_parent.json").write_text(json.dumps(kept))
    assert tracking.parent_run_id(folder, [cfg]) == old.info.run_id
    run = client.get_run(old.info.run_id)
    assert run.info.run_name == "old grid"
    assert run.data.params["model"] == "cifar10_convnet" and "out" not in run.data.params
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["digits"]


def _cfg(**update) -> TrainConfig:
    cfg = TrainConfig(model="cifar10_convnet", out="runs/x/seed0")
    return cfg.model_validate({**cfg.model_dump(by_alias=True), **update})


def test_parent_run_name_from_the_grid_folder():
    w3a3 = _cfg(quant={"name": "dorefa", "bits": 3, "act_bits": 3})
    assert parent_run_name(Path("runs/default/q/cifar10_convnet-dorefa-w3"), [w3a3]) == (
        "q cifar10_convnet dorefa w3a3"
    )
    assert parent_run_name(Path("runs/default/fp/resnet20"), [_cfg()]) == "fp resnet20"
    assert parent_run_name(Path("runs/default/fpcont/resnet20"), [_cfg()]) == "fpcont resnet20"
    w4 = _cfg(quant={"name": "wrpn", "bits": 4})  # weights only; the folder names no method
    assert parent_run_name(Path("runs/study/grid"), [w4]) == "study grid wrpn w4"


def test_parent_params_shared_values_and_varied_lists():
    dorefa = {"name": "dorefa", "bits": 3}
    arms = [_cfg(seed=s, quant=dorefa, regularizer={"name": n, "lambda": lam}) for s in (2, 10)
            for n, lam in (("sinreq", 0.1), ("msqe", 1.0))]  # fmt: skip
    params = parent_params(arms)
    assert params["seed"] == "2,10"  # numeric order, not text order
    assert params["regularizer.name"] == "msqe,sinreq"
    assert params["regularizer.lambda"] == "0.1,1.0"
    assert params["model"] == "cifar10_convnet" and params["quant.name"] == "dorefa"
    assert not {"out", "init_from", "parent_run_id"} & set(params)


def test_runs_table_url():
    table = "#/experiments/7/runs?workflowType=machine_learning"
    assert runs_table_url("127.0.0.1", 5000, "7") == f"http://127.0.0.1:5000/{table}"
    assert runs_table_url("0.0.0.0", 8080, "7") == f"http://127.0.0.1:8080/{table}"
    assert runs_table_url("::1", 5000, "7", "sinreq") == (
        f"http://[::1]:5000/{table}&viewStateShareKey=sinreq"
    )


@pytest.fixture
def no_server(monkeypatch):
    """Fail the test if anything tries to start a process (the server)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(tracking.subprocess, "Popen", refuse)


def test_ui_dry_run_prints_the_runs_table_link_and_writes_its_view(store, capsys, no_server):
    from mlflow import MlflowClient

    uri, _ = store
    assert main(["ui", "--tracking-uri", uri, "--experiment", EXPERIMENT, "--port", "5123",
                 "--dry-run"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    experiment = MlflowClient(uri).get_experiment_by_name(EXPERIMENT)
    assert out.strip() == runs_table_url("127.0.0.1", 5123, experiment.experiment_id, "sinreq")
    assert "mlflow server --backend-store-uri" in err and "--host 127.0.0.1 --port 5123" in err
    view = json.loads(experiment.tags["mlflow.sharedViewState.sinreq"])
    columns = view["selectedColumns"]
    for column in ("params.`quant.name`", "params.`quant.bits`", "params.`regularizer.lambda`",
                   "params.`seed`", "metrics.`test_acc`", "metrics.`test_acc_mean`"):  # fmt: skip
        assert column in columns
    assert "params.`phase`" not in columns  # None in every run: no column


def test_ui_defaults_come_from_the_profile(store, tmp_path, monkeypatch, capsys, no_server):
    uri, _ = store
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(f"tracking_uri: {uri}\nexperiment: {EXPERIMENT}\n")
    assert main(["ui", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("http://127.0.0.1:5000/#/experiments/")


def test_ui_unknown_experiment_is_one_line_exit_2(store, capsys, no_server):
    uri, _ = store
    assert main(["ui", "--tracking-uri", uri, "--experiment", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nope'" in err[0] and f"'{EXPERIMENT}'" in err[0]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--port", "http"], "--port 'http': allowed: a port number 1..65535"),
        (["--port", "70000"], "--port '70000'"),
        (["--host", ""], "--host '': allowed"),
        (["--tracking-uri", "mlflow.db"], "a bare path is not a tracking URI"),
    ],
)
def test_ui_bad_input_is_one_line_exit_2(tmp_path, capsys, no_server, flags, expected):
    assert main(["ui", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def test_ui_missing_store_is_not_created(tmp_path, capsys, no_server):
    assert main(["ui", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no store at" in err[0]
    assert not (tmp_path / "none.db").exists()


FAKE_SERVER = textwrap.dedent(
    """
    import http.server, sys, threading
    handler = http.server.BaseHTTPRequestHandler
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), handler)
    threading.Timer(1.5, server.shutdown).start()  # a server that stops by itself
    server.serve_forever()
    """
)


def test_serve_ui_prints_the_link_once_up_and_leaves_no_process(monkeypatch):
    """serve_ui waits for the server's /health (any HTTP answer: this one says 501), prints
    the link, and stops the server's whole process group when it returns."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(tracking.subprocess, "Popen", popen)
    out = io.StringIO()
    url = runs_table_url("127.0.0.1", port, "1")
    cmd = [sys.executable, "-c", FAKE_SERVER, str(port)]
    assert tracking.serve_ui(cmd, url, f"http://127.0.0.1:{port}/health", out=out) == 0
    assert out.getvalue() == url + "\n"
    [proc] = started
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # the group is gone


def test_serve_ui_server_that_dies_is_one_line(tmp_path):
    cmd = [sys.executable, "-c", "raise SystemExit(3)"]
    with pytest.raises(RuntimeError, match="exited with code 3 before answering"):
        tracking.serve_ui(cmd, "http://x/", "http://127.0.0.1:1/health", out=io.StringIO())
