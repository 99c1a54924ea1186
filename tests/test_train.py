"""`sinreq train`: the command, its outputs, MLflow contents, resume, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sinreq.cli import main
from sinreq.config import TrainConfig, config_hash, grid_run_name, resolve_run_folder

# Smoke runs on 1,617 digits: their 1-epoch fine-tunes sit at chance; keep going (recorded)
FAST = ["--model", "cifar10_convnet", "--dataset", "digits", "--batch-size", "64", "--lr", "0.02",
        "--on-collapse", "continue"]  # fmt: skip
WRPN4 = ["--quant.name", "wrpn", "--quant.bits", "4"]
TIME_KEYS = {"wall_time_s", "images_per_s"}


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its tables created once (creating them takes seconds)."""
    import mlflow

    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture(autouse=True)
def _store(tmp_path, empty_store, monkeypatch):
    """A fresh MLflow store per test, and ``tmp_path`` as the working directory, so that nothing
    a test writes lands in the checkout."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _runs(uri: str, experiment: str = "sinreq"):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment])


def _results(out: Path) -> dict:
    return {
        k: v
        for k, v in json.loads((out / "metrics.json").read_text()).items()
        if k not in TIME_KEYS
    }


def test_issue_command_writes_metrics_and_mlflow_run(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "cifar10_convnet",
        "--dataset",
        "digits",
        "--quant.name",
        "dorefa",
        "--quant.bits",
        "3",
        "--regularizer.lambda",
        "1",
        "--epochs",
        "4",
        "--seed",
        "0",
        "--out",
        str(out),
        "--tracking-uri",
        _uri(tmp_path),
        "--profile",
        "unit",
        "--stage",
        "s1",
        "--on-collapse",
        "continue",  # this command collapses (tests/test_newcomer_collapse.py); it is kept
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "test_acc",
        "val_acc",
        "sin2",
        "layers",
        "epochs",
        "wall_time_s",
        "images_per_s",
        "near_level_frac",
        "hard_round_test_acc",
    ):
        assert key in metrics, key
    assert metrics["epochs"] == 4 and 0 <= metrics["test_acc"] <= 100
    assert 0 <= metrics["near_level_frac"] <= 1
    assert not {"best_test_acc", "test_acc_at_best_val"} & set(metrics)  # no selection on test
    assert {r["bits"] for r in metrics["layers"].values()} == {3, 8}
    # oscillations per weight in the last epoch: every layer has them; the run's is the mean of
    # the 3-bit layers' (as near_level_frac and sin2 are)
    osc = {name: r["oscillations"] for name, r in metrics["layers"].items() if r["bits"] == 3}
    assert len(osc) == 3 and all(v >= 0 for v in osc.values())
    assert metrics["oscillations"] == pytest.approx(sum(osc.values()) / 3, rel=1e-12)
    config = json.loads((out / "config.json").read_text())
    assert (
        config["regularizer"]["lambda"] == 1.0
        and config["quant"]["bits"] == 3
        and config["git_commit"] is not None
    )
    assert "torch" in config["package_versions"]
    layers = json.loads((out / "layers.json").read_text())
    assert [r["weight_bits"] for r in layers if r["kind"] != "QuantAct"] == [8, 3, 3, 3, 8]
    assert (out / "weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one summary line per epoch on stdout
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 4 and "lambda 1" in lines[0]

    runs = _runs(_uri(tmp_path))
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    assert run["tags.mlflow.runName"] == "cifar10_convnet-digits-dorefa-w3-sinreq1-normalized-s0"
    assert run["params.regularizer.lambda"] == "1.0" and run["params.bits.0"] == "8"
    assert run["tags.profile"] == "unit" and run["tags.stage"] == "s1"
    assert run["tags.git_commit"] == config["git_commit"]
    assert run["tags.version.torch"] == torch.__version__
    assert run["metrics.test_acc"] == pytest.approx(metrics["test_acc"])
    import mlflow

    client = mlflow.tracking.MlflowClient(_uri(tmp_path))
    run_id = run["run_id"]
    assert len(client.get_metric_history(run_id, "train_ce")) == 4
    assert len(client.get_metric_history(run_id, "train_reg")) == 4
    assert [m.value for m in client.get_metric_history(run_id, "lambda")] == [1.0] * 4
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "config.json", "weights.png", "layers_table.json"} <= artifacts


def test_mlflow_artifacts_live_beside_the_store_and_the_experiment_opens_on_runs(tmp_path):
    import mlflow

    store = tmp_path / "elsewhere"
    store.mkdir()
    shutil.copy(tmp_path / "mlflow.db", store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    started_in = tmp_path / "cwd"
    started_in.mkdir()
    os.chdir(started_in)  # the autouse fixture restores the working directory
    argv = [
        "train",
        *FAST,
        *WRPN4,
        "--epochs",
        "1",
        "--seed",
        "0",
    ]
    assert main([*argv, "--out", str(tmp_path / "run"), "--tracking-uri", uri]) == 0

    assert not (started_in / "mlruns").exists()
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("sinreq")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.artifact_location == (store / "mlartifacts").resolve().as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert (store / "mlartifacts" / run.info.run_id / "artifacts" / "metrics.json").is_file()
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "digits" and len(dataset.dataset.digest) == 8
    assert [t.value for t in dataset.tags if t.key == "mlflow.data.context"] == ["training"]


def test_same_seed_same_numbers_and_finished_run_not_retrained(tmp_path, capsys):
    common = [
        "train",
        *FAST,
        *WRPN4,
        "--regularizer.lambda",
        "0.5",
        "--epochs",
        "2",
        "--tracking-uri",
        _uri(tmp_path),
    ]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    # b differs only in drawing no weights.png: same numbers, same result-relevant configuration
    assert main([*common, "--plot_weights", "false", "--out", str(tmp_path / "b")]) == 0
    assert _results(tmp_path / "a") == _results(tmp_path / "b")
    assert (tmp_path / "a" / "weights.png").exists() and not (
        tmp_path / "b" / "weights.png"
    ).exists()
    recorded = [json.loads((tmp_path / f / "config.json").read_text()) for f in "ab"]
    configs = [TrainConfig(**{k: c[k] for k in TrainConfig.model_fields}) for c in recorded]
    assert configs[1].plot_weights is False and config_hash(configs[0]) == config_hash(configs[1])
    stamp = (tmp_path / "a" / "checkpoint.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert "finished run, nothing to do" in capsys.readouterr().err
    assert (tmp_path / "a" / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert len(_runs(_uri(tmp_path))) == 2


def test_grid_and_init_from_template(tmp_path):
    uri = _uri(tmp_path)
    assert (
        main(
            [
                "train",
                *FAST,
                "--quant.name",
                "fp",
                "--epochs",
                "1",
                "--grid",
                "seed=0,1",
                "--out",
                str(tmp_path / "fp"),
                "--tracking-uri",
                uri,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                *FAST,
                *WRPN4,
                "--epochs",
                "1",
                "--init-from",
                str(tmp_path / "fp" / "seed{seed}"),
                "--grid",
                "seed=0,1",
                "--grid",
                "regularizer.lambda=0,2",
                "--out",
                str(tmp_path / "q"),
                "--grid-summary",
                str(tmp_path / "q.json"),
                "--tracking-uri",
                uri,
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "q.json").read_text())
    assert sorted(summary) == ["seed0-lambda0", "seed0-lambda2", "seed1-lambda0", "seed1-lambda2"]
    config = json.loads((run_dir(tmp_path / "q" / "seed1-lambda2") / "config.json").read_text())
    assert (
        config["init_from"] == str(run_dir(tmp_path / "fp" / "seed1"))
        and config["regularizer"]["lambda"] == 2.0
    )
    # fine-tuning starts from the baseline's weights: the first layer's latent weights moved
    # only a little from the seed-1 baseline (lr 0.02, one epoch), far less than across seeds
    fp1 = torch.load(run_dir(tmp_path / "fp" / "seed1") / "checkpoint.pt", weights_only=True)[
        "model"
    ]
    fp0 = torch.load(run_dir(tmp_path / "fp" / "seed0") / "checkpoint.pt", weights_only=True)[
        "model"
    ]
    q1 = torch.load(run_dir(tmp_path / "q" / "seed1-lambda0") / "checkpoint.pt", weights_only=True)[
        "model"
    ]
    moved = (q1["0.weight"] - fp1["0.weight"]).norm()
    assert moved < 0.5 * (fp0["0.weight"] - fp1["0.weight"]).norm()
    runs = _runs(uri)
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]  # one per grid: fp and q
    names = sorted(parents["tags.mlflow.runName"])  # the --out folder's last two parts (+ quant)
    assert len(runs) == 6 + 2 and names == [f"{tmp_path.name} fp", f"{tmp_path.name} q wrpn w4"]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert children.groupby("tags.mlflow.parentRunId").size().sort_values().tolist() == [2, 4]


def run_dir(path: Path) -> Path:
    """A grid's run folder ``OUT/<name>-<hash>`` from ``OUT/<name>`` (its grid's index.json)."""
    return Path(resolve_run_folder(str(path)))


def test_lambda_tuned_on_validation_then_fresh_final_seeds(tmp_path, capsys):
    uri = _uri(tmp_path)
    fp = ["train", *FAST, "--quant.name", "fp", "--epochs", "1", "--tracking-uri", uri]
    assert main([*fp, "--grid", "seed=0,1,10", "--out", str(tmp_path / "fp")]) == 0
    q = ["train", *FAST, "--quant.name", "dorefa", "--quant.bits", "3", "--quant.act-bits", "3",
         "--epochs", "1",
         "--init-from", str(tmp_path / "fp" / "seed{seed}"), "--tracking-uri", uri,
         "--out", str(tmp_path / "q")]  # fmt: skip
    assert main([*q, "--tune-lambdas", "0,0.5,5", "--tune-seeds", "10", "--grid", "seed=0,1"]) == 0
    tune = {lam: json.loads((run_dir(tmp_path / "q" / "tune" / f"seed10-lambda{lam}")
                             / "metrics.json").read_text())["val_acc"]
            for lam in ("0", "0.5", "5")}  # fmt: skip
    best = max(("0.5", "5"), key=lambda lam: (tune[lam], -float(lam)))  # lambda 0: never chosen
    choice = json.loads((tmp_path / "q" / "lambda_choice.json").read_text())["sinreq"]
    assert f"{choice['chosen']:g}" == best
    assert {k: v["val_acc_mean"] for k, v in choice["candidates"].items()} == tune
    finals = sorted(p.name[:-9] for p in (tmp_path / "q" / "final").iterdir() if p.is_dir())
    assert finals == sorted(f"seed{s}-lambda{lam}" for s in (0, 1) for lam in ("0", best))
    config = json.loads((run_dir(tmp_path / "q" / "final" / f"seed1-lambda{best}") / "config.json")
                        .read_text())  # fmt: skip
    assert config["phase"] == "final" and config["init_from"] == str(
        run_dir(tmp_path / "fp" / "seed1")
    )
    phases = _runs(uri)["tags.phase"].value_counts().to_dict()
    assert phases == {"tune": 3, "final": 4}
    # A tuning seed that is also a final seed, or a grid over lambda, is refused before any run.
    capsys.readouterr()
    assert main([*q, "--tune-lambdas", "1", "--tune-seeds", "1", "--grid", "seed=0,1"]) == 2
    assert "seed 1 is also a final seed" in capsys.readouterr().err
    assert (
        main([*q, "--tune-lambdas", "1", "--tune-seeds", "5", "--grid", "regularizer.lambda=0,1"])
        == 2
    )
    assert "may vary only seed" in capsys.readouterr().err
    assert len(_runs(uri)) == 3 + 7 + 2  # and the parent runs of the fp and q grids


def test_arms_tuned_separately_and_paired_with_one_shared_baseline(tmp_path):
    """A list of regularizers: each arm tuned on its own lambdas (validation argmax), the
    lambda-0 runs (tuning reference and final baseline) run once for all arms."""
    uri = _uri(tmp_path)
    fp = ["train", *FAST, "--quant.name", "fp", "--epochs", "1", "--tracking-uri", uri]
    assert (
        main([*fp, "--grid", "seed=0,10", "--max-steps", "4", "--out", str(tmp_path / "fp")]) == 0
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        "regularizer:\n"
        "  - {name: sinreq, lambdas: '0,0.5,5', schedule: constant}\n"
        "  - {name: msqe, lambdas: '0.1,1', schedule: constant}\n"
        "  - {name: sinreq, lambdas: '1', schedule: constant, options: {domain: latent}}\n"
    )
    q = ["train", *FAST, "--quant.name", "dorefa", "--quant.bits", "3", "--quant.act-bits", "3",
         "--epochs", "1", "--max-steps", "4", "--init-from", str(tmp_path / "fp" / "seed{seed}"),
         "--tracking-uri", uri, "--out", str(tmp_path / "q"), "--regularizer-from", str(params),
         "--tune-lambdas", "0,7", "--tune-seeds", "10", "--grid", "seed=0"]  # fmt: skip
    assert main(q) == 0

    def val(name: str) -> float:
        return json.loads((run_dir(tmp_path / "q" / "tune" / name) / "metrics.json").read_text())[
            "val_acc"
        ]

    choice = json.loads((tmp_path / "q" / "lambda_choice.json").read_text())
    assert sorted(choice) == ["msqe", "sinreq", "sinreq-2"]
    tuned = json.loads((run_dir(tmp_path / "q" / "tune" / "seed10-lambda0") / "metrics.json")
                       .read_text())  # fmt: skip
    assert tuned["test_acc"] is None and tuned["hard_round_test_acc"] is None  # test never read
    for arm, lams in (("sinreq", ("0.5", "5")), ("msqe", ("0.1", "1")), ("sinreq-2", ("1",))):
        best = max(lams, key=lambda lam: (val(f"seed10-lambda{lam}-{arm}"), -float(lam)))
        assert f"{choice[arm]['chosen']:g}" == best
        # --tune-lambdas' 0 is every arm's validation reference (run once), never chosen
        assert choice[arm]["candidates"]["0"]["val_acc_mean"] == val("seed10-lambda0")
    tune = sorted(grid_run_name(p) for p in (tmp_path / "q" / "tune").iterdir() if p.is_dir())
    assert tune == sorted(["seed10-lambda0", "seed10-lambda0.5-sinreq", "seed10-lambda5-sinreq",
                           "seed10-lambda0.1-msqe", "seed10-lambda1-msqe",
                           "seed10-lambda1-sinreq-2"])  # fmt: skip
    finals = sorted(grid_run_name(p) for p in (tmp_path / "q" / "final").iterdir() if p.is_dir())
    assert finals == sorted(
        ["seed0-lambda0"] + [f"seed0-lambda{choice[a]['chosen']:g}-{a}" for a in choice]
    )
    from sinreq.report.results import collect_results

    arms = collect_results([tmp_path / "q"]).query("phase == 'final'")["arm"]
    assert sorted(arms) == ["q", "q+msqe", "q+sinreq domain=latent", "q+sinreq domain=normalized"]


def test_yaml_config_and_flags_win(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: cifar10_convnet\nquant: {name: wrpn, bits: 5}\nepochs: 3\nbatch-size: 64\n"
        "regularizer: {lambda: 0.25}\nlr_milestones: [1, 2]\n"
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(cfg),
                "--epochs",
                "1",
                "--out",
                str(out),
                "--tracking-uri",
                _uri(tmp_path),
            ]
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert (config["quant"]["name"], config["quant"]["bits"], config["epochs"]) == ("wrpn", 5, 1)
    assert config["regularizer"]["lambda"] == 0.25 and config["lr_milestones"] == [1, 2]
    assert config["batch_size"] == 64


BAD_INPUTS = [
    (["--quant.bits", "0"], "bits=0"),
    (["--quant.bits", "33"], "bits=33"),
    (["--model", "lenet"], "unknown model 'lenet'"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--quant.name", "xnor"], "unknown quantizer 'xnor'; allowed: fp, dorefa, lsq, wrpn"),
    (["--regularizer.lambda", "-1"], "lambda=-1.0 is not allowed"),
    (["--epochs", "-1"], "--epochs"),
    (["--config", "/nonexistent/c.yaml"], "cannot read config"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/data"], "sinreq download cifar10"),
    (["--init-from", "/nonexistent/run"], "no checkpoint"),
    (["--regularizer.schedule", "linear"], "allowed: constant, cosine, tanh, warmup"),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_INPUTS)
def test_bad_input_one_line_error_and_nothing_touched(tmp_path, capsys, extra, expected):
    out = tmp_path / "run"
    base = [
        "train",
        *FAST,
        "--quant.name",
        "dorefa",
        "--quant.bits",
        "4",
        "--regularizer.lambda",
        "1",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--tracking-uri",
        _uri(tmp_path),
    ]
    assert main(base) == 0
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    capsys.readouterr()
    assert main([*base, *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err and "Traceback" not in err
    after = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert after == before


def test_other_configuration_in_out_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    base = [
        "train",
        *FAST,
        "--quant.name",
        "fp",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--tracking-uri",
        _uri(tmp_path),
    ]
    assert main(base) == 0
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert main([*base, "--seed", "3"]) == 2
    assert "another configuration (seed: 0 there, 3 now)" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before


def test_divergence_stops_with_error_and_failed_mlflow_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                *FAST,
                "--quant.name",
                "fp",
                "--lr",
                "1e6",
                "--epochs",
                "2",
                "--out",
                str(out),
                "--tracking-uri",
                _uri(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "training diverged" in err and len(err.strip().splitlines()) == 1
    runs = _runs(_uri(tmp_path))
    assert list(runs["status"]) == ["FAILED"]


def test_cli_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sinreq", "train", "--model", "nope", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "sinreq train: error: --model: unknown model 'nope'; allowed: alexnet, cifar10_convnet, "
        "resnet18, resnet20, svhn_convnet, vgg11"
    ]
    assert not (tmp_path / "x").exists()


def test_sigkill_after_first_checkpoint_then_resume_gives_identical_metrics(tmp_path):
    args = [
        sys.executable,
        "-m",
        "sinreq",
        "train",
        "--model",
        "svhn_convnet",
        "--dataset",
        "digits",
        "--quant.name",
        "dorefa",
        "--quant.bits",
        "4",
        "--quant.act-bits",
        "4",
        "--regularizer.lambda",
        "0.5",
        "--regularizer.schedule",
        "warmup",
        "--regularizer.warmup-epochs",
        "2",
        "--epochs",
        "4",
        "--batch-size",
        "128",
        "--lr",
        "0.05",
        "--lr-milestones",
        "2",
        "--seed",
        "3",
        "--tracking-uri",
        _uri(tmp_path),
        "--on-collapse",
        "continue",  # a 4-epoch smoke run from scratch; what is tested is the resume
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = killed / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= done < 4, "the run must be killed mid-way for this test to mean anything"
    assert not (killed / "metrics.json").exists()

    subprocess.run([*args, "--out", str(killed)], check=True, capture_output=True)
    subprocess.run([*args, "--out", str(tmp_path / "clean")], check=True, capture_output=True)
    assert _results(killed) == _results(tmp_path / "clean")
    resumed = json.loads((killed / "config.json").read_text())
    assert resumed["seed"] == 3
    # the resumed run continued the same MLflow run: one run per output folder
    runs = _runs(_uri(tmp_path))
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}


@pytest.mark.parametrize("compile_", [False, True])
def test_compile_trains_in_channels_last(tmp_path, compile_):
    """``--compile`` builds the model in NHWC (inductor then needs no NCHW copies for the
    quantizers' backward); eager CPU training stays NCHW."""
    from sinreq.train import TrainConfig, build_training

    cfg = TrainConfig(
        quant={"name": "dorefa", "bits": 4, "act_bits": 4},
        model="resnet20",
        out=str(tmp_path),
        compile=compile_,
    )
    model, _, _ = build_training(cfg, 10, torch.device("cpu"))
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    nhwc = [w.is_contiguous(memory_format=torch.channels_last) for w in convs]
    nchw = [w.is_contiguous() for w in convs if w.shape[2:] != (1, 1)]
    assert all(nhwc) if compile_ else all(nchw) and not all(nhwc)


def test_max_steps_caps_the_training_batches_per_epoch(tmp_path):
    from sinreq.train import TrainConfig, prepare_run, train_epoch

    cfg = TrainConfig(
        model="cifar10_convnet", dataset="digits", out=str(tmp_path), batch_size=64, max_steps=2
    )
    run = prepare_run(cfg)
    loader, drawn = run.shard, []

    class Counting:
        """The train loader, recording each batch it hands out."""

        generator, sampler = loader.generator, None

        def __len__(self) -> int:
            return len(loader)

        def __iter__(self):
            for batch in loader:
                drawn.append(len(batch[1]))
                yield batch

    assert len(loader) > 2
    run.shard = Counting()
    train_epoch(run, 0)
    assert drawn == [64, 64]
