"""Where a run's numbers go besides its folder: provenance (git commit, package versions) and the
MLflow run (parameters, per-layer bits, tags, per-epoch metrics, artifacts)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from sinreq.config import TrainConfig, result_config


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


def start_mlflow_run(cfg: TrainConfig, run_id: str | None):
    """The MLflow run of ``cfg``: resumed when ``run_id`` is given, else a new one (a context
    manager, as ``mlflow.start_run`` returns)."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep stderr for what matters
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_experiment(cfg.experiment)
    return mlflow.start_run(run_id=run_id, run_name=cfg.run_name())


def log_run_header(
    cfg: TrainConfig, config: dict, layers: list[dict], device: torch.device
) -> None:
    """Parameters (the resolved configuration and every layer's bits), tags and the layer table
    of a new run."""
    import mlflow

    params = {
        k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in result_config(cfg).items()
    }
    for row in layers:
        bits = row["weight_bits"] if row["kind"] != "QuantAct" else f"act{row['act_bits']}"
        params[f"bits.{row['layer']}"] = bits
    mlflow.log_params(params)
    tags = {
        "git_commit": config["git_commit"],
        "git_dirty": config["git_dirty"],
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        **{f"version.{k}": v for k, v in config["package_versions"].items()},
    }
    tags.update({k: getattr(cfg, k) for k in ("profile", "stage", "phase") if getattr(cfg, k)})
    mlflow.set_tags(tags)
    mlflow.log_dict({"layers": layers}, "layers_table.json")
