"""The DVC pipeline: profiles resolve to the intended grid; the tiny profile runs end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    """PATH with this interpreter's scripts; one thread, as the local launcher's workers use."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}


def _copy_repo(dest: Path, profile: str | None) -> Path:
    """The repository's committed-or-tracked files in a fresh git repo at ``dest``."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    if profile:
        shutil.copy(dest / "pipelines" / f"{profile}.yaml", dest / "params.yaml")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def _dvc(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``dvc ARGS`` in ``repo``, output captured; a non-zero exit fails the test with its tail."""
    run = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=repo, env=env or _env(), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def _stages(repo: Path) -> dict[str, str]:
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        return {s.name: s.cmd for s in dvc_repo.index.stages if hasattr(s, "cmd") and s.cmd}


def test_default_profile_resolves_to_the_promised_grid():
    stages = _stages(ROOT)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["profile"] == "default" and params["datasets"] == ["digits"]
    quant = [cmd for name, cmd in stages.items() if name.startswith("quant@")]
    fp = [cmd for name, cmd in stages.items() if name.startswith("fp@")]
    models = {cmd.split("--model ")[1].split()[0] for cmd in quant}
    assert len(models) >= 2 and len(fp) == len(models)
    assert len(quant) == len(models) * 2 * 2  # 3 and 4 bits: 5 would add 4 processes (50 s)
    for method in ("dorefa", "wrpn"):
        for bits in (3, 4):
            assert sum(f"--quant.name {method} --quant.bits {bits} " in c for c in quant) == len(
                models
            )
    final, tune = params["seeds"]["final"], params["seeds"]["tune"]
    assert len(final.split(",")) >= 3 and not set(final.split(",")) & set(tune.split(","))
    assert all(f"--grid seed={final} " in c and f"--tune-seeds {tune} " in c for c in quant)
    assert all("--tune-lambdas " in c and "--grid lambda" not in c for c in quant)
    assert all(f"--grid seed={tune},{final} " in c and "--phase final" in c for c in fp)
    assert {"prepare@digits", "report", "check"} <= set(stages)


def test_fashion_profile_resolves_to_the_cpu_study(tmp_path):
    repo = _copy_repo(tmp_path, "fashion")
    stages = _stages(repo)
    quant = [c for n, c in stages.items() if n.startswith("quant@")]
    assert len(quant) == 2 * 3 and "prepare@fashion_mnist" in stages
    assert all("--dataset fashion_mnist " in c and "--quant.act_bits bits " in c for c in quant)
    assert all("--grid seed=0,1,2,3,4 " in c and "--tune-seeds 100,101 " in c for c in quant)
    assert all("--regularizer-from params.yaml" in c for c in quant)
    options = yaml.safe_load((repo / "params.yaml").read_text())["regularizer"]["options"]
    assert options["domain"] == "normalized" and options["max_bits"] == 7
    assert "--out reports/fashion " in stages["report"]


def test_paper_profile_resolves_to_the_full_study(tmp_path):
    repo = _copy_repo(tmp_path, "paper")
    stages = _stages(repo)
    quant = {n: c for n, c in stages.items() if n.startswith("quant@")}
    assert len(quant) == 6 * 2 * 3
    expected_data = {
        "cifar10_convnet": "cifar10",
        "svhn_convnet": "svhn",
        "resnet20": "cifar10",
        "vgg11": "cifar10",
        "alexnet": "imagenet",
        "resnet18": "imagenet",
    }
    for model, dataset in expected_data.items():
        cmds = [c for c in quant.values() if f"--model {model} " in c]
        assert len(cmds) == 6, model
        assert all(f"--dataset {dataset} " in c and "--device cuda" in c for c in cmds)
        assert all("--grid seed=0,1,2,3,4 " in c and "--batch_size 256" in c for c in cmds)
        assert all("--tune-seeds 100,101 " in c and "--regularizer-from params.yaml" in c
                   for c in cmds)  # fmt: skip
    options = yaml.safe_load((repo / "params.yaml").read_text())["regularizer"]["options"]
    assert options["domain"] == "normalized"
    assert {"prepare@cifar10", "prepare@svhn"} <= set(stages)
    assert "prepare@imagenet" not in stages  # user-supplied through data.dvc


@pytest.fixture(scope="module")
def tiny_inline(tmp_path_factory) -> Path:
    """The tiny profile, run by ``dvc repro`` with the inline launcher on one thread."""
    repo = _copy_repo(tmp_path_factory.mktemp("inline"), "tiny")
    _dvc(repo, "repro")
    return repo


@pytest.mark.slow
def test_tiny_profile_end_to_end(tiny_inline):
    repo = tiny_inline

    import pandas as pd

    reports = repo / "reports" / "tiny"
    results = pd.read_csv(reports / "results.csv")
    # FP baselines of seeds 10 and 0, FP continued for seed 0; per method one tuning run
    # (seed 10, lambda 1) and the final seed 0 at lambda 0 and 1.
    assert len(results) == 2 + 1 + 2 * 3
    assert results.groupby("phase").size().to_dict() == {"baseline": 2, "final": 5, "tune": 2}
    assert set(results.loc[results["phase"] == "tune", "seed"]) == {10}
    gap = pd.read_csv(reports / "gap_closure.csv")
    assert len(gap) == 2 and set(gap["bits"]) == {3} and (gap["q_n"] == 1).all()
    fp_cont = results[(results["method"] == "fp") & (results["phase"] == "final")]
    assert gap["fp_mean"].tolist() == pytest.approx([fp_cont["test_acc"].item()] * 2)
    selection = pd.read_csv(reports / "lambda_selection.csv")
    assert selection["chosen"].all() and (selection["final_lambda"] == 1.0).all()
    for png in ("acc_vs_bits.png", "gap_closure.png", "weight_hist.png", "mechanism.png"):
        assert (reports / png).read_bytes()[:4] == b"\x89PNG"
    assert "NOT MEASURED" in (reports / "check.txt").read_text()

    shown = _dvc(repo, "metrics", "show", "--json").stdout
    metrics = json.loads(shown)
    files = next(iter(metrics.values()))["data"]
    # headline.json is the one DVC metric; the grids' summaries are plain outputs
    assert set(files) == {"reports/tiny/headline.json"}
    headline = json.loads((reports / "headline.json").read_text())
    measured = {k: v for k, v in headline.items() if v is not None}  # one seed: no CI (null)
    assert files["reports/tiny/headline.json"]["data"] == pytest.approx(measured)
    grid = json.loads((repo / "metrics/tiny/fp-cifar10_convnet.json").read_text())
    fp_metrics = grid["seed0"]
    baseline = results[(results["method"] == "fp") & (results["phase"] == "baseline")]
    assert fp_metrics["test_acc"] == pytest.approx(baseline.set_index("seed").loc[0, "test_acc"])

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["sinreq-tiny"])
    children = runs["tags.mlflow.parentRunId"].notna()
    assert children.sum() == 9  # nine training runs, each under its grid's parent run
    assert len(runs) == 9 + 4 + 1  # parents: fp, fpcont, 2 x quant; and the report run
    assert set(runs["status"]) == {"FINISHED"}
    assert set(runs["tags.profile"].dropna()) == {"tiny"}

    again = _dvc(repo, "repro").stdout
    assert "Running stage" not in again, again
    assert len(mlflow.search_runs(experiment_names=["sinreq-tiny"])) == 14


@pytest.mark.slow
def test_tiny_profile_with_local_workers_and_a_tracking_server(
    tmp_path, tiny_inline, mlflow_server
):
    repo = _copy_repo(tmp_path, "tiny")
    settings = [
        "-S",
        "launcher.kind=local",
        "-S",
        "launcher.workers=2",
        "-S",
        f"tracking_uri={mlflow_server}",
    ]
    run = _dvc(repo, "exp", "run", *settings)
    assert "database is locked" not in run.stdout + run.stderr

    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(mlflow_server)
    runs = mlflow.search_runs(experiment_names=["sinreq-tiny"])
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(children) == 9 and len(runs) == 9 + 4 + 1
    assert set(runs["status"]) == {"FINISHED"}
    assert set(children["tags.mlflow.parentRunId"]) <= set(runs["run_id"])

    def numbers(repo: Path) -> pd.DataFrame:
        results = pd.read_csv(repo / "reports" / "tiny" / "results.csv")
        timing = [c for c in results.columns if "time" in c or "per_s" in c]
        return results.drop(columns=timing).sort_values(["method", "phase", "seed", "lambda"])

    pd.testing.assert_frame_equal(
        numbers(repo).reset_index(drop=True), numbers(tiny_inline).reset_index(drop=True)
    )


SITECUSTOMIZE = """
import json, os
table = os.environ.get("SINREQ_TEST_MD5")
if table:  # the generated files' MD5s replace torchvision's published ones (test only)
    from torchvision.datasets import CIFAR10, SVHN
    md5 = json.loads(open(table).read())
    CIFAR10.train_list = [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)]
    CIFAR10.test_list = [["test_batch", md5["test_batch"]]]
    CIFAR10.meta = {**CIFAR10.meta, "md5": md5["batches.meta"]}
    SVHN.split_list = {s: [u, f, md5.get(f, h)] for s, (u, f, h) in SVHN.split_list.items()}
"""


@pytest.mark.paper_smoke
def test_paper_profile_runs_on_cpu_with_generated_data(tmp_path):
    """All six networks of the paper profile through dvc repro, report and check, on CPU, fed
    CIFAR-10 / SVHN / ImageNet files generated in their real on-disk formats, two batches per
    epoch (``max_steps``), a quarter of the channels; one bit width and one lambda keep it short."""
    from test_data import md5, write_cifar, write_imagenet, write_svhn

    repo = _copy_repo(tmp_path / "repo", "paper")
    data = repo / "data"
    write_cifar(data / "cifar10")
    write_svhn(data / "svhn")
    write_imagenet(data / "imagenet")
    files = [*(data / "cifar10" / "cifar-10-batches-py").iterdir(), *(data / "svhn").iterdir()]
    (tmp_path / "md5.json").write_text(json.dumps({f.name: md5(f) for f in files}))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update(profile="smoke", device="cpu", datasets=[], report_dir="reports/smoke")
    params["seeds"] = {"tune": "100", "final": "0"}
    params["quant"].update(bits=[3], init_from="runs/smoke/fp/{model}/seed{seed}")
    params["quant"]["bn_recalib_batches"] = 2
    for net in params["networks"]:
        net["lambdas"] = "1"
        short = {"epochs": 1, "lr": 0.01, "batch_size": 8, "max_steps": 2, "workers": 0}
        short["width"] = 0.25  # the same architectures, narrower: checkpoints stay small
        net["fp"], net["quant"] = dict(short), dict(short)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = {
        **_env(),
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
        "SINREQ_TEST_MD5": str(tmp_path / "md5.json"),
    }
    _dvc(repo, "repro", env=env)

    import pandas as pd

    results = pd.read_csv(repo / "reports" / "smoke" / "results.csv")
    assert set(results["model"]) == {
        "cifar10_convnet",
        "svhn_convnet",
        "resnet20",
        "vgg11",
        "alexnet",
        "resnet18",
    }
    assert set(results["dataset"]) == {"cifar10", "svhn", "imagenet"}
    # per network: 2 FP baselines, 1 FP continued, per method 1 tuning run + 2 final runs
    assert len(results) == 6 * (2 + 1 + 2 * 3)
    check = (repo / "reports" / "smoke" / "check.txt").read_text()
    assert "0 pass, 0 fail" in check and "NOT MEASURED" in check


@pytest.mark.slow
def test_a_bad_profile_stops_dvc_repro_before_anything_runs(tmp_path):
    repo = _copy_repo(tmp_path, "tiny")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["regularizer"]["options"]["domian"] = "latent"
    params["quant"]["bits"] = [3, 9]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = subprocess.run(
        [str(BIN / "dvc"), "repro"], cwd=repo, env=_env(), capture_output=True, text=True
    )
    assert run.returncode != 0
    output = run.stdout + run.stderr
    errors = [line for line in output.splitlines() if line.startswith("sinreq params: error:")]
    assert len(errors) == 1 and "'domian'" in errors[0] and "bits=9" in errors[0], output
    assert not any((repo / name).exists() for name in ("runs", "data", "mlflow.db", "metrics"))


def _run_folders(repo: Path) -> set[str]:
    return {str(p.parent.relative_to(repo)) for p in (repo / "runs").rglob("config.json")}


@pytest.mark.slow
def test_dvc_exp_run_trains_the_changed_runs_and_reuses_the_rest(tmp_path, tiny_inline):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_inline, repo, symlinks=True)
    before = _run_folders(repo)
    fp = {f for f in before if "/fp" in f}
    # a regularizer option: only the lambda > 0 runs change (per method one tuning run and one
    # final run); FP and the lambda-0 runs are reused, none clashes with a finished run
    data_dvc = (repo / "data.dvc").read_text()
    run = _dvc(repo, "exp", "run", "-S", "regularizer.options.domain=latent")
    assert "No file hash info found" not in run.stdout + run.stderr  # data/imagenet's warning
    assert (repo / "data.dvc").read_text() == data_dvc  # no empty md5 line written
    after = _run_folders(repo)
    new = after - before
    assert before <= after and len(new) == 2 * 2, sorted(new)
    configs = [json.loads((repo / f / "config.json").read_text()) for f in new]
    assert all(c["regularizer"]["options"]["domain"] == "latent" for c in configs)
    assert all(c["regularizer"]["lambda"] > 0 for c in configs)
    # a quantizer option: every quantized run is new, the FP runs are still reused
    _dvc(repo, "exp", "run", "-S", "quant.first_last=quantize")
    newer = _run_folders(repo) - after
    assert len(newer) == 2 * 3 and not newer & fp, sorted(newer)
    configs = [json.loads((repo / f / "config.json").read_text()) for f in newer]
    assert {c["quant"]["first_last"] for c in configs} == {"quantize"}
