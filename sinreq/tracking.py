"""Where a run's numbers go besides its folder: provenance (git commit, package versions) and the
MLflow run (parameters, per-layer bits, tags, per-epoch metrics, artifacts)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from sinreq.config import TrainConfig, flat_config, result_config

# MLflow's telemetry thread sets and unsets an environment variable while `requests` iterates
# os.environ for proxy settings: a run logging to a server died of KeyError
# '_MLFLOW_TELEMETRY_SESSION_ID' (a local-workers test, 1 run in 4). Off unless the user set it;
# before mlflow is imported, in every process that logs (workers inherit it).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def provenance() -> dict[str, Any]:
    """Git commit and dirty flag of the checkout holding this package (None for an installed
    copy outside any git repository), and the versions that matter."""
    source = Path(__file__).resolve().parent

    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *cmd], capture_output=True, text=True, timeout=10, cwd=source
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    packages = ["sinreq", "torch", "torchvision", "numpy", "mlflow", "pydantic"]
    versions = {p: metadata.version(p) for p in packages}
    versions["torch"] = torch.__version__  # with its build tag, e.g. +cu130
    versions["python"] = sys.version.split()[0]
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "package_versions": versions,
    }


KIND_TAG = "mlflow.experimentKind"  # the MLflow 3 UI opens such an experiment on its runs table
TRAINING_KIND = "custom_model_development"


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside a sqlite store's file
    (not ``./mlruns`` of whatever folder a run started in); None lets the store decide, as a
    tracking server does with its ``--artifacts-destination``."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    store = Path(tracking_uri.removeprefix("sqlite:///")).expanduser().resolve()
    return (store.parent / "mlartifacts").as_uri()


def experiment_id(tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created (artifact location, training-runs kind) if new."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(
            name, artifact_location(tracking_uri), tags={KIND_TAG: TRAINING_KIND}
        )
    except MlflowException:  # a parallel run created it first
        return client.get_experiment_by_name(name).experiment_id


def start_mlflow_run(cfg: TrainConfig, run_id: str | None):
    """The MLflow run of ``cfg``: resumed when ``run_id`` is given, else a new one, a child of
    ``cfg.parent_run_id`` when set (a context manager, as ``mlflow.start_run`` returns)."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep stderr for what matters
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    return mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment_id(cfg.tracking_uri, cfg.experiment),
        run_name=cfg.run_name(),
        parent_run_id=None if run_id else cfg.parent_run_id,
    )


def dataset_input(cfg: TrainConfig):
    """``cfg``'s dataset as an MLflow dataset (name, source folder, and a digest of what defines
    its splits: the published file checksums, hold-out fraction, classes)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    from sinreq.data.checksums import expected_checksums

    defined_by = {
        "dataset": cfg.dataset,
        "files": expected_checksums(cfg.dataset),
        "val_fraction": cfg.val_fraction,
        "classes": cfg.classes,
    }
    digest = hashlib.sha256(json.dumps(defined_by, sort_keys=True).encode()).hexdigest()[:8]
    source = LocalArtifactDatasetSource(str(Path(cfg.data_dir).expanduser().resolve()))
    return MetaDataset(source, name=cfg.dataset, digest=digest)


def log_dataset_input(cfg: TrainConfig) -> None:
    """Log ``cfg``'s dataset as the active run's training input, safe when parallel runs log it
    at the same instant."""
    import mlflow
    from mlflow.exceptions import MlflowException

    dataset = dataset_input(cfg)
    try:
        mlflow.log_input(dataset, context="training")
    except MlflowException as err:
        if err.error_code != "BAD_REQUEST":  # what the store's IntegrityError arrives as
            raise
        # a parallel run inserted the same (experiment, name, digest) row first: link to it
        mlflow.log_input(dataset, context="training")


def log_run_header(
    cfg: TrainConfig, config: dict, layers: list[dict], device: torch.device
) -> None:
    """Parameters (the resolved configuration and every layer's bits), tags and the layer table
    of a new run."""
    import mlflow

    params = {
        k: json.dumps(v) if isinstance(v, list | dict) else v
        for k, v in flat_config(result_config(cfg)).items()
    }
    for row in layers:
        bits = row["weight_bits"] if row["kind"] != "QuantAct" else f"act{row['act_bits']}"
        params[f"bits.{row['layer']}"] = bits
    mlflow.log_params(params)
    tags = {
        "git_commit": config["git_commit"],
        "git_dirty": config["git_dirty"],
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "world_size": config["world_size"],
        **{f"version.{k}": v for k, v in config["package_versions"].items()},
    }
    tags.update({k: getattr(cfg, k) for k in ("profile", "stage", "phase") if getattr(cfg, k)})
    mlflow.set_tags(tags)
    mlflow.log_dict({"layers": layers}, "layers_table.json")
    log_dataset_input(cfg)


def parent_run_id(folder: Path, cfg: TrainConfig) -> str:
    """The MLflow run that groups the grid in ``folder``: created once, its id kept in
    ``folder/mlflow_parent.json`` so that a rerun files its runs under the same parent."""
    from mlflow import MlflowClient

    from sinreq.checkpoint import write_json

    file = folder / "mlflow_parent.json"
    if file.is_file():
        kept = json.loads(file.read_text())
        if kept["tracking_uri"] == cfg.tracking_uri:
            return kept["run_id"]
    tags = {k: getattr(cfg, k) for k in ("profile", "stage") if getattr(cfg, k)}
    run = MlflowClient(cfg.tracking_uri).create_run(
        experiment_id(cfg.tracking_uri, cfg.experiment),
        run_name=folder.name,
        tags={**tags, "sinreq.grid": str(folder)},
    )
    folder.mkdir(parents=True, exist_ok=True)
    write_json(file, {"run_id": run.info.run_id, "tracking_uri": cfg.tracking_uri})
    return run.info.run_id


def finish_parent_run(
    run_id: str | None, tracking_uri: str, metrics: dict[str, float], tags: dict[str, str]
) -> None:
    """Log the grid's summary on its parent run and mark the run finished."""
    if run_id is None:
        return
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client, now = MlflowClient(tracking_uri), int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    client.set_terminated(run_id)
