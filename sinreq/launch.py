"""Run what one ``sinreq train`` command asks for (a :class:`~sinreq.config.Plan`): its runs fanned
out on an existing engine, lambda tuning before the final seeds, and the MLflow parent run that
groups a grid's runs and carries its summary.

Engines (the ``launcher`` block of a params file, ``--launcher-from``):

- ``inline``: one run after another in this process (the default);
- ``local``: ``workers`` processes on this machine (``concurrent.futures``), each with
  ``threads_per_worker`` torch threads: on 2 cores, two 1-thread runs avoid OpenMP contention;
- ``slurm``: one Slurm job array per phase through submitit; a job with several tasks is one
  DistributedDataParallel run (submitit exports torchrun's variables).

Every engine waits for the phase, names the failed runs in one line, and a rerun skips finished
runs and resumes interrupted ones (each run's folder holds its checkpoint).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sinreq import distributed
from sinreq.checkpoint import write_json
from sinreq.config import Plan, TrainConfig, grid_run_name, write_index
from sinreq.train import TrainingError, resolve_device, train


class SlurmOptions(BaseModel):
    """Resources of each array task (submitit's ``slurm_*`` parameters)."""

    model_config = ConfigDict(extra="forbid")
    partition: str | None = None
    time_min: int = Field(240, ge=1)
    cpus_per_task: int = Field(8, ge=1)
    gpus_per_node: int = Field(1, ge=0)
    nodes: int = Field(1, ge=1)
    tasks_per_node: int = Field(1, ge=1)  # > 1 (or nodes > 1): each run is a DDP run
    array_parallelism: int = Field(64, ge=1)
    mem_gb: float | None = Field(None, gt=0)


class Launcher(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["inline", "local", "slurm"] = "inline"
    workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    log_folder: str = "runs/launcher"
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)


def load_launcher(path: str | None) -> Launcher:
    """The ``launcher`` block of the YAML file at ``path`` (inline when absent)."""
    if path is None:
        return Launcher()
    try:
        block = (yaml.safe_load(Path(path).read_text()) or {}).get("launcher") or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"--launcher-from {path}: {' '.join(str(err).split())}") from None
    try:
        return Launcher.model_validate(block)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(k) for k in ("launcher", *first["loc"]))
        msg = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"--launcher-from {path}: {where}={first.get('input')!r}: {msg}") from None


def check_tracking(launcher: Launcher, cfg: TrainConfig) -> None:
    """Parallel writers lock a sqlite store: fan-out needs a tracking server."""
    if launcher.kind != "inline" and cfg.tracking_uri.startswith("sqlite:"):
        raise ValueError(
            f"launcher.kind={launcher.kind} with tracking_uri={cfg.tracking_uri}: parallel runs "
            "lock a sqlite store; allowed: an http:// MLflow server (see README, 'Scale out')"
        )


def run_key(cfg: TrainConfig) -> str:
    """``seed0-lambda1``, or ``tune/seed0-lambda1`` for a phase's run (folder ``...-<hash>``)."""
    name = grid_run_name(cfg.out)
    return f"{cfg.phase}/{name}" if cfg.phase in ("tune", "final") else name


def run_phase(
    launcher: Launcher, cfgs: list[TrainConfig], pool: ProcessPoolExecutor | None = None
) -> dict[str, dict[str, Any]]:
    """Train ``cfgs`` in ``pool`` (the local workers), as a Slurm array, or here, one after
    another; their metrics keyed by :func:`run_key`."""
    if pool is not None:
        return _wait(cfgs, [pool.submit(train, cfg) for cfg in cfgs])
    if launcher.kind == "slurm":
        return _wait(cfgs, submit_slurm(launcher, cfgs))
    return {run_key(cfg): train(cfg) for cfg in cfgs}


@contextmanager
def local_workers(launcher: Launcher) -> Iterator[ProcessPoolExecutor | None]:
    """The local kind's worker processes, started once for all phases (None for other kinds)."""
    if launcher.kind != "local":
        yield None
        return
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding MLflow/OpenMP
    threads = (launcher.threads_per_worker,)
    with ProcessPoolExecutor(launcher.workers, spawn, _set_threads, threads) as pool:
        yield pool


def _set_threads(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def submit_slurm(launcher: Launcher, cfgs: list[TrainConfig]) -> list:
    import submitit

    options = launcher.slurm
    executor = submitit.SlurmExecutor(folder=Path(launcher.log_folder) / "%j")
    executor.update_parameters(
        partition=options.partition,
        time=options.time_min,
        cpus_per_task=options.cpus_per_task,
        gpus_per_node=options.gpus_per_node or None,
        nodes=options.nodes,
        ntasks_per_node=options.tasks_per_node,
        array_parallelism=options.array_parallelism,
        mem=f"{options.mem_gb}GB" if options.mem_gb else None,
        job_name=f"sinreq-{Path(cfgs[0].out).parent.name}",
    )
    return executor.map_array(train_task, cfgs)


def train_task(cfg: TrainConfig) -> dict[str, Any]:
    """One Slurm array task: a plain run, or with several tasks one DDP run across them."""
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    with distributed.process_group(resolve_device(cfg.device)):
        return train(cfg)


def _wait(cfgs: list[TrainConfig], jobs: list) -> dict[str, dict[str, Any]]:
    """Wait for ``jobs`` (futures or submitit jobs), print progress, and raise one line naming
    the failed runs."""
    shown = -1
    while (done := sum(job.done() for job in jobs)) < len(jobs):
        if done != shown:
            print(f"{done}/{len(jobs)} runs done", file=sys.stderr, flush=True)
            shown = done
        time.sleep(2)
    results, failed = {}, []
    for cfg, job in zip(cfgs, jobs, strict=True):
        try:
            results[run_key(cfg)] = job.result()
        except Exception as err:  # the run's own error, raised in its worker or array task
            failed.append(f"{run_key(cfg)} ({' '.join(str(err).split())[:200]})")
    if failed:
        raise TrainingError(
            f"{len(failed)} of {len(jobs)} runs failed: {'; '.join(failed)}; rerun the same "
            "command to retry them (finished runs are skipped)"
        )
    return results


def train_all(plan: Plan, launcher: Launcher | None = None) -> None:
    """Run ``plan``: its runs, or lambda tuning then the final seeds; with a grid, also write
    ``plan.summary`` (the headline metrics of every run, a DVC metrics file) and give its runs
    an MLflow parent run that carries the grid's summary."""
    from sinreq.tracking import finish_parent_run, parent_run_id
    from sinreq.tuning import choose_lambda

    launcher = launcher or Launcher()
    first = (plan.runs + plan.tune_runs)[0]
    check_tracking(launcher, first)
    if distributed.world_size() > 1 and launcher.kind != "inline":
        raise ValueError(f"launcher.kind={launcher.kind} under torchrun; allowed: inline")
    for cfg in plan.runs + plan.tune_runs:
        distributed.check_batch_size(cfg.batch_size)  # before joining the process group
    device = resolve_device(first.device)
    with local_workers(launcher) as pool, distributed.process_group(device):
        parent = None
        if plan.folder is not None and distributed.is_main():
            parent = parent_run_id(plan.folder, plan.all_runs())
            write_index(plan.all_runs())
        plan = plan.with_parent(parent)
        results = run_phase(launcher, plan.runs + plan.tune_runs, pool)
        chosen: dict[str, float] = {}
        if plan.tune:
            choices = {
                arm: choose_lambda(
                    [(c.regularizer.lam, results[run_key(c)]["val_acc"]) for c in cfgs]
                )
                for arm, cfgs in plan.tune.items()
            }
            chosen = {arm: choice["chosen"] for arm, choice in choices.items()}
            if distributed.is_main():
                write_json(plan.folder / "lambda_choice.json", choices)
                picked = ", ".join(f"{arm} {lam:g}" for arm, lam in chosen.items())
                print(f"lambda chosen on validation: {picked}", file=sys.stderr)
            finals = [c for arm, lam in chosen.items() for c in plan.finals[arm][lam]]
            results.update(run_phase(launcher, plan.baseline + finals, pool))
    if plan.summary is not None and distributed.is_main():
        keep = ("test_acc", "val_acc", "near_level_frac", "sin2", "hard_round_test_acc")
        summary = {name: {k: m[k] for k in keep if k in m} for name, m in results.items()}
        write_json(plan.summary, summary)

        def measured(cfgs: list[TrainConfig]) -> list[tuple[TrainConfig, dict[str, Any]]]:
            return [(c, results[run_key(c)]) for c in cfgs]

        arms = {arm: (lam, measured(plan.finals[arm][lam])) for arm, lam in chosen.items()}
        metrics, tags = grid_summary(measured(plan.baseline if chosen else plan.runs), arms)
        finish_parent_run(parent, first.tracking_uri, metrics, tags)
        picked = ", ".join(f"{arm} {lam:g}" for arm, lam in chosen.items())
        where = plan.folder / "lambda_choice.json" if chosen else None
        choice = f"; lambda chosen on validation: {picked} ({where})" if chosen else ""
        print(
            f"grid done: {len(results)} runs; summary {plan.summary}{choice}; "
            f"MLflow parent run {parent}",
            flush=True,
        )


def grid_summary(
    runs: list[tuple[TrainConfig, dict[str, Any]]],
    arms: dict[str, tuple[float, list[tuple[TrainConfig, dict[str, Any]]]]] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """What the parent run shows: test accuracy mean, std and n over seeds; with lambda tuning,
    ``runs`` are the lambda-0 finals (suffix ``_q``) and each arm (``_<arm>``: its chosen
    lambda's finals) adds its chosen lambda and its paired gain over ``_q`` (mean, 95 % CI, p;
    its verdict is uncorrected, the report applies Holm)."""
    import numpy as np

    from sinreq.stats import paired_difference, verdict

    def by_seed(measured: list[tuple[TrainConfig, dict[str, Any]]]) -> list[float]:
        return [m["test_acc"] for _, m in sorted(measured, key=lambda r: r[0].seed)]

    accs = {"_q" if arms else "": by_seed(runs)}
    accs |= {f"_{arm}": by_seed(measured) for arm, (_, measured) in (arms or {}).items()}
    metrics: dict[str, float] = {}
    for suffix, values in accs.items():
        acc = np.array(values)
        metrics |= {f"test_acc_mean{suffix}": acc.mean(), f"test_acc_n{suffix}": acc.size}
        metrics[f"test_acc_std{suffix}"] = acc.std(ddof=1) if acc.size > 1 else 0.0
    tags: dict[str, str] = {}
    for arm, (lam, _) in (arms or {}).items():
        gain = paired_difference(accs["_q"], accs[f"_{arm}"])
        metrics |= {f"lambda_chosen_{arm}": lam, f"gain_mean_{arm}": gain.mean}
        metrics |= {f"gain_p_{arm}": gain.p, f"gain_ci_low_{arm}": gain.ci_low}
        metrics[f"gain_ci_high_{arm}"] = gain.ci_high
        tags[f"verdict_uncorrected_{arm}"] = verdict(gain, gain.p < 0.05)
    return metrics, tags
