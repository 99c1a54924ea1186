"""Train one network in one configuration: ``sinreq train``.

A plain loop in the spirit of torchvision's ``references/classification``::

    loss = cross_entropy(model(x), y) + R(epoch)      # R = SinReQ(model, lambda) / MSQE, or 0

SGD with momentum and weight decay, MultiStepLR. After every epoch a quantized run refreshes its
BatchNorm statistics and is validated; the run writes, atomically, ``OUT/checkpoint.pt`` (model,
optimizer, scheduler, RNG states, history, MLflow run id) and logs the epoch to MLflow. Rerunning
the same command resumes from the last completed epoch and ends with the same numbers as an
uninterrupted run; a finished run returns at once. The test split is read once, at the end.

``OUT`` ends up holding ``config.json`` (the resolved configuration, git commit, package
versions), ``layers.json`` (per-layer bits), ``metrics.json``, ``checkpoint.pt`` and
``weights.png`` (quantized layers' weight histograms against the level grid; not with
``--plot_weights false``).

No silent collapse: a run whose loss is non-finite (the step is refused), whose mean training
cross-entropy over an epoch exceeds ``EXPLODED_CE_FACTOR`` x ln(classes) (ten times a chance-level
guess's), or, for a fine-tune (``--init-from``: it starts from a trained model), whose validation
accuracy after a whole first epoch is at most ``CHANCE_MARGIN`` x chance (1.5 x 100/classes %),
capped at chance + ``CHANCE_MARGIN_MAX_POINTS`` (5 points): 15 % for 10 classes, 55 % for 2, has
collapsed (:func:`collapse_reason`). With ``--on-collapse stop`` (the default) it ends with one
line naming what happened and the likely cause (exit 2); the folder keeps what it wrote,
``metrics.json`` (the model as it stopped) says ``"collapsed": true`` and the MLflow run is
FAILED; rerunning the command stops again, ``--on-collapse continue`` resumes it. With
``continue`` (asked for, and recorded in config.json) the run goes on after a one-line warning on
stderr, and its ``metrics.json`` records ``"collapsed": true`` and ``"collapse"`` (the reason), as
does the MLflow tag ``collapsed``. Training from scratch is not judged on accuracy (a short first
epoch on a small set can sit near chance and recover), nor is a first epoch cut short by
``--max-steps``. A non-finite loss stops the run under either setting.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from sinreq import distributed, models
from sinreq.checkpoint import (
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from sinreq.config import (
    TrainConfig,
    differing_result_field,
    grid_run_name,
    result_config,
    result_value,
)
from sinreq.evaluation import evaluate, recalibrate_batchnorm
from sinreq.interrupts import deferred, interruptible
from sinreq.mechanism import OscillationCounter, grid_stats, plot_weights, snapped_weights
from sinreq.models.pretrained import torchvision_state
from sinreq.ptq import accuracy_curve, float_weights
from sinreq.quant import layer_table, quantize_model
from sinreq.regularizers import REGULARIZERS
from sinreq.tracking import check_tracking_uri, log_run_header, provenance, start_mlflow_run

EXPLODED_CE_FACTOR = 10.0  # collapsed: an epoch's mean cross-entropy > 10 x ln(classes)
CHANCE_MARGIN = 1.5  # collapsed: first-epoch validation accuracy <= 1.5 x chance ...
CHANCE_MARGIN_MAX_POINTS = 5.0  # ... but never more than 5 points above chance


class TrainingError(RuntimeError):
    """A run that cannot go on (diverged, or its folder holds a different run): one-line message."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a user error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda requested but no CUDA device is available; allowed: cpu")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def memory_format(device: torch.device, compile: bool) -> torch.memory_format:
    """``channels_last`` (NHWC) on CUDA (tensor cores) and under ``--compile`` (inductor then
    needs no NCHW copies of the quantizers' saved tensors); eager CPU training stays NCHW."""
    use_nhwc = device.type == "cuda" or compile
    return torch.channels_last if use_nhwc else torch.contiguous_format


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class Run:
    """What one run trains with, built from its configuration before anything is written."""

    cfg: TrainConfig
    device: torch.device
    model: nn.Module  # whose state is saved
    step_model: nn.Module  # what the steps call: ``model``, wrapped by DDP and/or torch.compile
    regularizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loaders: tuple  # train, validation, test (whole splits)
    shard: Any  # this rank's part of the train split under torchrun, else the train loader
    amp: bool
    layout: torch.memory_format
    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0
    mlflow_run_id: str | None = None
    classes: int = 0  # of the dataset: what chance level means
    collapse: str | None = None  # why the run collapsed (see collapse_reason), None if it did not
    oscillations: dict[str, float] = field(default_factory=dict)  # per layer, the last epoch


def _initial_state(cfg: TrainConfig, num_classes: int) -> dict[str, torch.Tensor]:
    """``--init-from``: a run folder or checkpoint file, or ``torchvision:WEIGHTS``."""
    if cfg.init_from.startswith("torchvision:"):
        tag = cfg.init_from.removeprefix("torchvision:")
        return torchvision_state(cfg.model, tag, num_classes)
    try:
        return load_model_state(cfg.init_from)
    except ValueError as err:
        raise ValueError(f"--init-from: {err}") from None


def _split_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """``state`` without and with the quantizers' entries (LSQ's steps)."""
    quant = {k: v for k, v in state.items() if "weight_quant." in k or "act_quant." in k}
    return {k: v for k, v in state.items() if k not in quant}, quant


def build_training(
    cfg: TrainConfig, num_classes: int, device: torch.device
) -> tuple[nn.Module, Any, torch.optim.Optimizer]:
    """The model (built, initialised from ``--init-from``, quantized, on ``device``), the
    regularizer (None when lambda is 0) and the SGD optimizer that ``cfg`` describes."""
    model = models.build(cfg.model, num_classes, cfg.width)
    state, quant_state = (
        _split_state(_initial_state(cfg, num_classes)) if cfg.init_from else ({}, {})
    )
    q, reg = cfg.quant, cfg.regularizer
    try:
        if state:
            model.load_state_dict(state)
        if q.name != "fp":  # quantizers start from the loaded weights, then their own state
            model = quantize_model(model, q.name, q.bits, q.act_bits, q.first_last, q.overrides)
            model.load_state_dict(quant_state, strict=False)
    except RuntimeError as err:
        raise ValueError(
            f"--init-from: {cfg.init_from} does not fit {cfg.model} ({err})".splitlines()[0]
        ) from None
    model.to(device, memory_format=memory_format(device, cfg.compile))
    regularizer = None
    if reg.lam > 0:
        regularizer = REGULARIZERS.get(reg.name)(
            model,
            reg.lam,
            schedule=reg.schedule,
            epochs=cfg.epochs,
            warmup_epochs=reg.warmup_epochs,
            **reg.options,
        )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    return model, regularizer, optimizer


def prepare_run(cfg: TrainConfig) -> Run:
    """Device, seeds, data, model, regularizer, optimizer and schedule of ``cfg``: everything that
    can fail on bad input."""
    from sinreq.data import build_splits, make_loaders

    device = distributed.local_device(resolve_device(cfg.device))
    distributed.check_batch_size(cfg.batch_size)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    splits = build_splits(
        cfg.dataset, cfg.data_dir, val_fraction=cfg.val_fraction, split_seed=0, classes=cfg.classes
    )
    loaders = make_loaders(
        splits, cfg.batch_size, seed=cfg.seed, workers=cfg.workers, pin_memory=device.type == "cuda"
    )
    model, regularizer, optimizer = build_training(cfg, splits.num_classes, device)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.lr_milestones, cfg.lr_gamma)
    step_model, shard = model, loaders[0]
    if distributed.world_size() > 1:
        step_model, shard = distributed.wrap(model, device), distributed.shard(shard, cfg.seed)
    return Run(
        cfg,
        device,
        model,
        torch.compile(step_model) if cfg.compile else step_model,
        regularizer,
        optimizer,
        scheduler,
        loaders,
        shard,
        amp=cfg.amp and device.type == "cuda",
        layout=memory_format(device, cfg.compile),
        classes=splits.num_classes,
    )


def _checkpoint_in(out: Path) -> dict[str, Any] | None:
    """The checkpoint in ``out``; None if there is none."""
    file = out / "checkpoint.pt"
    if not file.exists():
        return None
    try:
        return load_checkpoint(file)
    except ValueError as err:
        raise TrainingError(f"{err}; move it away to start over") from None


def _changed_field(ckpt: dict[str, Any], cfg: TrainConfig) -> str | None:
    """The first result-changing field in which the checkpoint's run differs from ``cfg``."""
    return differing_result_field(ckpt["config"], cfg)


def _refuse_other_run(out: Path, ckpt: dict[str, Any], cfg: TrainConfig) -> None:
    changed = _changed_field(ckpt, cfg)
    if changed:
        old, now = result_value(ckpt["config"], changed), result_value(result_config(cfg), changed)
        raise TrainingError(
            f"{out} holds a run with another configuration ({changed}: {old!r} there, {now!r} "
            "now); use another --out"
        )


def _resume(run: Run, ckpt: dict[str, Any]) -> None:
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    run.start_epoch, run.history = ckpt["epoch"], ckpt["history"]
    run.mlflow_run_id = ckpt["mlflow_run_id"]
    run.collapse = ckpt.get("collapse")  # absent from checkpoints written before the guard
    run.oscillations = ckpt.get("oscillations", {})  # ... and before the counter


def _checkpoint(run: Run, epochs_done: int) -> dict[str, Any]:
    return {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "epoch": epochs_done,
        "rng": rng_state(),
        "history": run.history,
        "mlflow_run_id": run.mlflow_run_id,
        "config": result_config(run.cfg),
        "collapse": run.collapse,
        "oscillations": run.oscillations,
    }


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or resume, or return the finished result of) the run described by ``cfg``."""
    import mlflow

    out = Path(cfg.out)
    ckpt = _checkpoint_in(out)
    done = ckpt is not None and ckpt["epoch"] >= cfg.epochs and (out / "metrics.json").exists()
    done = done and not (ckpt.get("collapse") and cfg.on_collapse == "stop")  # stops again below
    if done and _changed_field(ckpt, cfg) is None:
        print(f"{out}: finished run, nothing to do", file=sys.stderr)
        metrics = json.loads((out / "metrics.json").read_text())
        print(final_line(cfg, metrics, ckpt.get("mlflow_run_id")), flush=True)
        return metrics
    check_tracking_uri(cfg.tracking_uri)  # a bad URI fails before the run folder exists
    run = prepare_run(cfg)  # bad input fails here, before anything is written
    if ckpt is not None:
        _refuse_other_run(out, ckpt, cfg)
        _resume(run, ckpt)
        if run.collapse and cfg.on_collapse == "stop":  # stopped before: stops again
            raise TrainingError(run.collapse)
        if distributed.is_main():
            print(
                f"{run_label(cfg)}resuming {out} from epoch {run.start_epoch} of {cfg.epochs} "
                f"(checkpoint {out / 'checkpoint.pt'})",
                file=sys.stderr,
                flush=True,
            )
    if not distributed.is_main():  # the other torchrun ranks train in step and write nothing
        for epoch in range(run.start_epoch, cfg.epochs):
            run_epoch(run, epoch)
            _check_collapse(run, run.history[-1], epoch)  # the same verdict as the main rank's
        return _final_metrics(run)
    # a signal stops the run only inside run_epoch; elsewhere (MLflow, checkpoint, the final
    # evaluation and its writes) it waits for the section's end
    with deferred():
        config = {**result_config(cfg), **provenance(), "world_size": distributed.world_size()}
        regularized = {name for name, _ in run.regularizer.layers} if run.regularizer else set()
        layers = [
            {**row, "regularized": row["layer"] in regularized} for row in layer_table(run.model)
        ]
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", config)
        write_json(out / "layers.json", layers)
        with (
            _said_if_interrupted(run, out) as kept,
            start_mlflow_run(cfg, run.mlflow_run_id) as tracked,
        ):
            if run.mlflow_run_id is None:
                log_run_header(cfg, config, layers, run.device)
            run.mlflow_run_id = tracked.info.run_id
            try:
                for epoch in range(run.start_epoch, cfg.epochs):
                    try:
                        with interruptible():
                            row = run_epoch(run, epoch)
                    except CollapseError as err:  # a non-finite loss: no step can be taken
                        _stop_collapsed(run, out, str(err))
                    mlflow.log_metrics(row, step=epoch + 1)
                    reason = _check_collapse(run, row, epoch)
                    save_checkpoint(_checkpoint(run, epoch + 1), out / "checkpoint.pt")
                    kept.epoch = epoch + 1
                    print(run_label(cfg) + _epoch_line(epoch, cfg.epochs, row), flush=True)
                    if reason is not None:
                        mlflow.set_tag("collapsed", reason)
                        if cfg.on_collapse == "stop":
                            _stop_collapsed(run, out, reason)
                        going_on = reason.partition(", or pass --on-collapse")[0]
                        print(f"{out}: warning: {going_on}; going on (--on-collapse continue)",
                              file=sys.stderr)  # fmt: skip
                if cfg.epochs == 0:  # evaluated only: later runs start from this checkpoint
                    save_checkpoint(_checkpoint(run, 0), out / "checkpoint.pt")
                    kept.epoch = 0
            except TrainingError as err:
                mlflow.set_tag("failure", str(err))
                mlflow.end_run(status="FAILED")
                raise
            metrics = _finish(run, out)
    print(final_line(cfg, metrics, run.mlflow_run_id), flush=True)
    return metrics


def run_label(cfg: TrainConfig) -> str:
    """``[seed0-lambda0.1] `` (``[tune/seed0-lambda0.1] `` in a tuning or final phase, as the
    grid summary names it) for a run of a grid (its folder ``OUT/<name>-<hash>``); ``""`` for a
    single run, whose lines stay unprefixed."""
    name = grid_run_name(cfg.out)
    if name == Path(cfg.out).name:
        return ""
    return f"[{cfg.phase}/{name}] " if cfg.phase in ("tune", "final") else f"[{name}] "


def final_line(cfg: TrainConfig, metrics: dict[str, Any], mlflow_run_id: str | None) -> str:
    """The line a finished run ends with: its test accuracy, folder and MLflow run."""
    acc = metrics.get("test_acc")
    tested = (
        f"test accuracy {acc:.2f} %" if acc is not None else "test accuracy not read: tuning run"
    )
    return (
        f"{run_label(cfg)}done: {tested}; folder {cfg.out}; MLflow run {mlflow_run_id} in "
        f"experiment {cfg.experiment} ({cfg.tracking_uri})"
    )


@dataclass
class _Kept:
    epoch: int | None  # the epoch whose checkpoint is in the run folder (None: no checkpoint)


@contextmanager
def _said_if_interrupted(run: Run, out: Path):
    """On Ctrl-C (KeyboardInterrupt), one line on stderr saying what the run folder keeps and
    how to go on; the interruption then goes on up (``sinreq train`` exits 130)."""
    kept = _Kept(run.start_epoch if (out / "checkpoint.pt").exists() else None)
    try:
        yield kept
    except KeyboardInterrupt:
        if kept.epoch is None:
            what = f"no checkpoint yet in {out}; rerun the same command to start it again"
        else:
            what = (
                f"checkpoint of epoch {kept.epoch} of {run.cfg.epochs} kept in {out}; rerun the "
                "same command to resume"
            )
        print(f"{run_label(run.cfg)}interrupted: {what}", file=sys.stderr, flush=True)
        raise


class CollapseError(TrainingError):
    """A collapsed run (:func:`collapse_reason`, or a non-finite loss): one-line message."""


def collapse_reason(row: dict[str, float], epoch: int, classes: int, whole_epoch: bool = True):
    """What says that the run whose epoch ``epoch`` (0-based) ended with ``row`` collapsed, or
    None: a mean training cross-entropy above ``EXPLODED_CE_FACTOR`` x ln(``classes``) (or not
    finite), or, after the first epoch if it is judged (``whole_epoch``: a fine-tune's whole
    epoch, not cut by ``--max-steps``), a validation accuracy at most chance (100/classes %)
    plus ``min((CHANCE_MARGIN - 1) x chance, CHANCE_MARGIN_MAX_POINTS)`` points, i.e. 1.5 x
    chance capped at chance + 5 points."""
    found = []
    ce, ceiling = row.get("train_ce"), EXPLODED_CE_FACTOR * math.log(max(classes, 2))
    if ce is not None and not ce <= ceiling:  # NaN included
        found.append(f"cross-entropy {ce:.3g} > {EXPLODED_CE_FACTOR:g} x ln {classes}")
    chance = 100.0 / max(classes, 1)
    limit = chance + min((CHANCE_MARGIN - 1) * chance, CHANCE_MARGIN_MAX_POINTS)
    if epoch == 0 and whole_epoch and row["val_acc"] <= limit:
        found.append(f"validation {row['val_acc']:.2f} % <= {limit:.3g} % (chance {chance:.3g} %)")
    return f"epoch {epoch + 1}: {' / '.join(found)}" if found else None


def _likely_cause(run: Run) -> str:
    """The likeliest cause of ``run``'s collapse and what to try, from its configuration."""
    cfg, q, reg = run.cfg, run.cfg.quant, run.cfg.regularizer
    batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in run.model.modules())
    if q.name != "fp" and q.act_bits is None and not batchnorm:
        return (
            f"{q.name} weights on a net without BatchNorm and with full-precision activations; "
            f"lower --lr ({cfg.lr:g}) or quantize activations (--quant.act-bits)"
        )
    if reg.lam > 0:
        return (
            f"too strong a regularizer (--regularizer.lambda {reg.lam:g}) or too high a learning "
            f"rate (--lr {cfg.lr:g}); lower --regularizer.lambda or --lr"
        )
    return f"too high a learning rate for this network (--lr {cfg.lr:g}); lower --lr"


def _collapse_message(run: Run, what: str, can_continue: bool = True) -> str:
    """``what`` happened, the likely cause, and (``can_continue``) the way to keep going."""
    message = f"{what}: training collapsed; likely cause: {_likely_cause(run)}"
    return message + (", or pass --on-collapse continue to keep going" if can_continue else "")


def _check_collapse(run: Run, row: dict[str, float], epoch: int) -> str | None:
    """Record (``run.collapse``) and return the one-line message of a collapse seen in ``row``;
    None when the epoch looks sane. A run that collapsed once stays marked."""
    whole = not run.cfg.max_steps or run.cfg.max_steps >= len(run.shard)
    what = collapse_reason(row, epoch, run.classes, whole and run.cfg.init_from is not None)
    if what is None:
        return None
    message = _collapse_message(run, what)
    run.collapse = run.collapse or message
    if not distributed.is_main() and run.cfg.on_collapse == "stop":
        raise CollapseError(message)
    return message


def _stop_collapsed(run: Run, out: Path, message: str) -> NoReturn:
    """Write what the run stopped at (``metrics.json``, ``"collapsed": true``) and raise."""
    import mlflow

    run.collapse = run.collapse or message
    mlflow.set_tag("collapsed", message)
    _finish(run, out)
    raise CollapseError(message)


def run_epoch(run: Run, epoch: int) -> dict[str, float]:
    """Train one epoch, step the schedule, refresh a quantized run's BatchNorm statistics,
    validate; the epoch's row is appended to ``run.history`` and returned."""
    start = time.perf_counter()
    with float_weights(run.model) if run.cfg.quant.ptq else nullcontext():
        row = train_epoch(run, epoch)  # PTQ: float weights; every evaluation is quantized
    run.scheduler.step()
    row["val_acc"] = _validate(run, run.step_model)
    row["epoch_wall_s"] = time.perf_counter() - start
    run.history.append(row)
    return row


def train_step(
    model: nn.Module,
    regularizer: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    epoch: float,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One SGD step on ``cross_entropy(model(x), y) + R(epoch)``; returns the cross-entropy,
    the penalty (None without a regularizer) and the logits. A non-finite loss raises
    :class:`TrainingError` before the weights move."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    ce = F.cross_entropy(logits.float(), y)
    reg = regularizer(epoch) if regularizer is not None else None
    loss = ce if reg is None else ce + reg
    if not torch.isfinite(loss):
        raise TrainingError(f"loss is {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return ce.detach(), None if reg is None else reg.detach(), logits


def train_epoch(run: Run, epoch: int) -> dict[str, float]:
    """One pass over the training set; returns mean CE, mean regularizer, lambda, accuracy,
    images per second."""
    from tqdm import tqdm

    cfg, loader = run.cfg, run.shard
    run.step_model.train()
    loader.generator.manual_seed(cfg.seed * 1000 + epoch)  # order is a function of (seed, epoch)
    if isinstance(getattr(loader, "sampler", None), DistributedSampler):
        loader.sampler.set_epoch(epoch)  # ... and so is each rank's share
    ce_sum = reg_sum = correct = seen = 0.0
    start = time.perf_counter()
    batches = tqdm(
        loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not sys.stderr.isatty()
    )
    steps = min(len(loader), cfg.max_steps or len(loader))
    counter = OscillationCounter(run.model, cfg.regularizer.domain)  # no layers at fp: a no-op
    for i, (x, y) in enumerate(itertools.islice(batches, steps)):
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        x = x.contiguous(memory_format=run.layout)
        try:
            ce, reg, logits = train_step(
                run.step_model,
                run.regularizer,
                x,
                y,
                run.optimizer,
                epoch + i / steps,
                run.amp,
            )
        except TrainingError as err:
            what = f"training diverged at epoch {epoch + 1}, batch {i + 1}: {err}"
            raise CollapseError(_collapse_message(run, what, can_continue=False)) from None
        counter.step()
        ce_sum += ce * y.numel()
        if reg is not None:
            reg_sum += reg * y.numel()
        correct += (logits.argmax(1) == y).sum()
        seen += y.numel()
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    ce_sum, reg_sum, correct, seen = distributed.sum_over_ranks(
        [ce_sum, reg_sum, correct, seen], run.device
    )
    lam = run.regularizer.lambda_at(epoch) if run.regularizer else 0.0
    run.oscillations = counter.per_weight()
    return {
        "train_ce": float(ce_sum / seen),
        "train_reg": float(reg_sum / seen),
        "lambda": lam,
        "train_acc": float(100.0 * correct / seen),
        "lr": run.optimizer.param_groups[0]["lr"],
        "images_per_s": seen / elapsed,
        "train_time_s": elapsed,
    }


def _epoch_line(epoch: int, epochs: int, row: dict[str, float]) -> str:
    return (
        f"epoch {epoch + 1}/{epochs}  ce {row['train_ce']:.4f}  reg {row['train_reg']:.4f}  "
        f"lambda {row['lambda']:g}  train {row['train_acc']:.2f}%  val {row['val_acc']:.2f}%  "
        f"{row['images_per_s']:.0f} img/s"
    )


def _finish(run: Run, out: Path) -> dict[str, Any]:
    """Final metrics (the one read of the test split), plot, MLflow metrics and artifacts."""
    import mlflow

    metrics = _final_metrics(run)
    write_json(out / "metrics.json", metrics)
    mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)})
    if run.cfg.quant.name != "fp" and run.cfg.plot_weights:
        plot_weights(run.model, out / "weights.png", run.cfg.run_name())
    for name in ("metrics.json", "config.json", "layers.json", "weights.png"):
        if (out / name).exists():
            mlflow.log_artifact(str(out / name))
    return metrics


def _final_metrics(run: Run) -> dict[str, Any]:
    """The final epoch's numbers. The test split is read here, once, after training, and never
    for a lambda-tuning run (``phase`` tune: its choice reads validation only): no epoch, lambda
    or configuration is ever selected on it."""
    cfg, history, test = run.cfg, run.history, run.loaders[2]
    last = history[-1] if history else _evaluated_only(run)
    tested = cfg.phase != "tune"

    def test_acc() -> float | None:
        return evaluate(run.model, test, run.device, run.amp, run.layout) if tested else None

    metrics: dict[str, Any] = {
        "test_acc": test_acc(),
        "val_acc": last["val_acc"],
        "epochs": len(history),
        "final_train_ce": last["train_ce"],
        "final_train_reg": last["train_reg"],
        "wall_time_s": sum(h["epoch_wall_s"] for h in history),
        "images_per_s": sum(h["images_per_s"] for h in history) / max(len(history), 1),
        "collapsed": run.collapse is not None,
    }
    if run.collapse is not None:
        metrics["collapse"] = run.collapse
    if cfg.quant.name != "fp":
        layers = grid_stats(run.model, cfg.regularizer.domain)
        for name, per_weight in run.oscillations.items():
            layers[name]["oscillations"] = per_weight
        at_bits = [v for v in layers.values() if v["bits"] < 8] or list(layers.values())
        for key in ("near_level_frac", "sin2", "oscillations"):
            if all(key in v for v in at_bits):
                metrics[key] = sum(v[key] for v in at_bits) / len(at_bits)
        metrics["layers"] = layers
        with snapped_weights(run.model, cfg.regularizer.domain):
            metrics["hard_round_test_acc"] = test_acc()
    if cfg.quant.ptq and tested:  # the curve reads test once per width; nothing is chosen on it

        def ptq_test() -> float:
            recalibrate_batchnorm(run.model, run.loaders[0], cfg.bn_recalib_batches, run.device)
            return evaluate(run.model, test, run.device, run.amp, run.layout)

        metrics["ptq_test_acc"] = accuracy_curve(run.model, cfg.quant.bits, ptq_test)
    return metrics


def _evaluated_only(run: Run) -> dict[str, float | None]:
    """The last-epoch row of a run with ``--epochs 0``: its ``--init-from`` weights, validated
    (BatchNorm recalibrated first when quantized), nothing trained."""
    return {"val_acc": _validate(run, run.model), "train_ce": None, "train_reg": None}


def _validate(run: Run, model: nn.Module) -> float:
    """Validation accuracy of ``model``, a quantized run's BatchNorm statistics refreshed first."""
    if run.cfg.quant.name != "fp":
        recalibrate_batchnorm(run.model, run.loaders[0], run.cfg.bn_recalib_batches, run.device)
    return evaluate(model, run.loaders[1], run.device, run.amp, run.layout)
