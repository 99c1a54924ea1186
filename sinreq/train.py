"""Train one network in one configuration: ``sinreq train``.

A plain loop in the spirit of torchvision's ``references/classification``::

    loss = cross_entropy(model(x), y) + R(model, epoch)      # R = SinReQ / MSQE or 0

SGD with momentum and weight decay, MultiStepLR. After every epoch the run writes, atomically,
``OUT/checkpoint.pt`` (model, optimizer, scheduler, RNG states, history, MLflow run id) and logs
the epoch's metrics to MLflow; rerunning the same command resumes from the last completed epoch and
ends with the same numbers as an uninterrupted run, and a finished run is not retrained.

``OUT`` ends up holding ``config.json`` (the resolved configuration, git commit, package
versions), ``layers.json`` (per-layer bits), ``metrics.json``, ``checkpoint.pt`` and
``weights.png`` (quantized layers' weight histograms against the level grid).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import random
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch import nn

from sinreq import models
from sinreq.checkpoint import atomic_write, load_checkpoint, load_model_state, save_checkpoint
from sinreq.data import DATASETS
from sinreq.quant import check_bits, layer_table, quantize_model, quantized_layers, weight_domain
from sinreq.regularizers import build_regularizer, near_level_fraction, nearest_level

# Fields that do not change the numbers a run produces: a resumed run may differ in these.
_NON_RESULT_FIELDS = {
    "out", "tracking_uri", "experiment", "device", "workers", "profile", "stage", "phase",
}  # fmt: skip


class TrainingError(RuntimeError):
    """A run that cannot go on (diverged, or its folder holds a different run): one-line message."""


class TrainConfig(BaseModel):
    """Everything that defines a training run. Each field is a ``--kebab-case`` flag and a key of
    the ``--config`` YAML file (flags win)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    model: str = Field(description=f"network: {', '.join(models.available())}")
    dataset: str = Field("digits", description=f"dataset: {', '.join(DATASETS)}")
    data_dir: str = Field("data", description="folder holding downloaded datasets")
    classes: int | None = Field(None, ge=2, description="keep the first N classes (imagenet)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="validation hold-out of train")
    method: Literal["fp", "dorefa", "wrpn"] = Field("fp", description="weight quantizer")
    bits: int = Field(4, description="weight bits (2..8)")
    act_bits: int | None = Field(
        None, description="activation bits (2..8); 'bits' = same as --bits; none = ReLU"
    )
    first_last: Literal["fp", "8bit", "quantize"] = Field(
        "8bit", description="first/last layer: keep float, 8 bits, or quantize like the rest"
    )
    overrides: dict[str, int | None] = Field(
        default_factory=dict, description="per-layer bits: PATTERN=BITS (BITS 'none' = float)"
    )
    width: float = Field(1.0, gt=0, description="width multiplier (WRPN widening)")
    lam: float = Field(0.0, alias="lambda", description="regularizer strength (0 = none)")
    regularizer: Literal["sinreq", "msqe"] = Field("sinreq", description="grid regularizer")
    domain: Literal["latent", "normalized"] = Field(
        "normalized",
        description="regularized value: DoReFa's normalized value (its real levels) or the latent "
        "weight (the authors' code; an ablation)",
    )
    schedule: Literal["constant", "warmup", "tanh"] = Field("constant", description="lambda ramp")
    warmup_epochs: float = Field(5.0, gt=0, description="epochs of the linear warm-up")
    reg_exclude_first_last: bool = Field(False, description="do not regularize first/last layer")
    reg_all_widths: bool = Field(
        False, description="also regularize layers at other widths (8-bit edges) on their grid"
    )
    bn_recalib_batches: int = Field(
        50,
        ge=0,
        description="training batches that refresh BatchNorm statistics before each "
        "evaluation of a quantized run (0 = off)",
    )
    epochs: int = Field(10, ge=1, description="training epochs")
    batch_size: int = Field(128, ge=1, description="mini-batch size")
    lr: float = Field(0.1, gt=0, description="initial learning rate")
    momentum: float = Field(0.9, ge=0, description="SGD momentum")
    weight_decay: float = Field(1e-4, ge=0, description="SGD weight decay")
    lr_milestones: list[int] = Field(default_factory=list, description="epochs to decay lr at")
    lr_gamma: float = Field(0.2, gt=0, description="lr decay factor at each milestone")
    seed: int = Field(0, ge=0, description="random seed (init, order, augmentation)")
    init_from: str | None = Field(None, description="checkpoint or run folder to start from")
    out: str = Field(description="run folder (resumed if it holds a checkpoint)")
    tracking_uri: str = Field("sqlite:///mlflow.db", description="MLflow tracking URI")
    experiment: str = Field("sinreq", description="MLflow experiment")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train")
    compile: bool = Field(False, description="torch.compile the model (pays off on long runs)")
    amp: bool = Field(True, description="bf16 autocast on CUDA (quantizers stay FP32)")
    workers: int = Field(0, ge=0, description="data-loader worker processes")
    profile: str | None = Field(None, description="pipeline profile (recorded as a tag)")
    stage: str | None = Field(None, description="pipeline stage (recorded as a tag)")
    phase: Literal["baseline", "tune", "final"] | None = Field(
        None, description="study phase: FP baseline, lambda tuning, or final seeds"
    )

    @field_validator("act_bits", "init_from", "classes", mode="before")
    @classmethod
    def _none_words(cls, v: Any, info) -> Any:
        """``none``, ``null`` and the empty string mean "not set" (as DVC renders nulls);
        ``--act-bits bits`` means "the same as --bits"."""
        if isinstance(v, str) and v.strip().lower() in ("", "none", "null"):
            return None
        if info.field_name == "act_bits" and v == "bits":
            return info.data.get("bits")
        return v

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in models.available():
            raise ValueError(f"unknown model {v!r}; allowed: {', '.join(models.available())}")
        return v

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; allowed: {', '.join(DATASETS)}")
        return v

    @field_validator("bits", "act_bits")
    @classmethod
    def _bits_range(cls, v: int | None, info) -> int | None:
        return v if v is None else check_bits(v, info.field_name)

    @field_validator("lam")
    @classmethod
    def _lambda_range(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"lambda={v!r} is not allowed; allowed: a finite number >= 0")
        return v

    @field_validator("overrides", mode="before")
    @classmethod
    def _parse_overrides(cls, v: Any) -> Any:
        if isinstance(v, list):  # from repeated --overrides PATTERN=BITS flags
            pairs = [item.split("=", 1) for item in v]
            if any(len(p) != 2 for p in pairs):
                raise ValueError(f"overrides {v!r} must look like PATTERN=BITS")
            v = {k: None if b.lower() in ("none", "fp") else int(b) for k, b in pairs}
        return {k: b if b is None else check_bits(b, f"bits of {k!r}") for k, b in v.items()}

    @field_validator("lr_milestones", mode="before")
    @classmethod
    def _parse_milestones(cls, v: Any) -> Any:
        return [int(x) for x in v.split(",") if x.strip()] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.init_from and "{" in self.init_from:  # e.g. runs/fp/{model}/seed{seed}
            try:
                self.init_from = self.init_from.format(**self.model_dump(by_alias=True))
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(f"--init-from {self.init_from!r}: unknown field {err}") from None
        if self.method == "fp" and self.lam > 0:
            raise ValueError(f"lambda={self.lam} needs a quantized method; allowed: dorefa, wrpn")
        if self.schedule == "warmup" and self.lam > 0 and self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} exceeds epochs={self.epochs}")
        return self

    def run_name(self) -> str:
        """A readable name for the run, e.g. ``resnet20-cifar10-dorefa-w4a4-sinreq1-s0``."""
        parts = [self.model, self.dataset, self.method]
        if self.method != "fp":
            parts.append(f"w{self.bits}" + (f"a{self.act_bits}" if self.act_bits else ""))
            if self.lam > 0:
                parts.append(f"{self.regularizer}{self.lam:g}-{self.domain}")
        return "-".join(parts + [f"s{self.seed}"])


# ---------------------------------------------------------------------------------------------
# Command line: flags generated from TrainConfig, merged over the optional YAML config.


def _flag(name: str) -> str:
    return "--" + (TrainConfig.model_fields[name].alias or name).replace("_", "-")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` flag per TrainConfig field, ``--config FILE.yaml`` and ``--grid``."""
    parser.add_argument("--config", help="YAML file with any of the options below (flags win)")
    parser.add_argument(
        "--grid", action="append", metavar="OPTION=V1,V2",
        help="train every combination of these values, each run in OUT/<option><value>-...",
    )  # fmt: skip
    parser.add_argument(
        "--grid-summary",
        metavar="FILE",
        help="where a grid writes its runs' metrics (OUT/grid.json)",
    )
    parser.add_argument(
        "--tune-lambdas", metavar="L1,L2",
        help="choose lambda on validation: --tune-seeds run every value (OUT/tune/), then the "
        "--grid seeds run lambda 0 and the best (OUT/final/)",
    )  # fmt: skip
    parser.add_argument(
        "--tune-seeds", metavar="S1,S2", help="seeds of the lambda tuning (not the final seeds)"
    )
    for name, field in TrainConfig.model_fields.items():
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": field.description}
        if field.annotation is bool:
            kwargs.update(nargs="?", const="true", metavar="true|false")
        elif name == "overrides":
            kwargs.update(action="append", metavar="PATTERN=BITS")
        flags = {_flag(name), _flag(name).replace("-", "_").replace("__", "--")}  # DVC dict style
        parser.add_argument(*sorted(flags), **kwargs)


def _field_name(key: str) -> str:
    """The TrainConfig field for a flag, YAML key or alias (``lambda`` -> ``lam``)."""
    key = key.replace("-", "_")
    return "lam" if key == "lambda" else key


def _validation_message(err: ValidationError) -> str:
    first = err.errors()[0]
    field = _field_name(str(first["loc"][0])) if first["loc"] else ""
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(f.alias or n for n, f in TrainConfig.model_fields.items())
        return f"unknown option {field!r}; allowed: {allowed}"
    msg = first["msg"].removeprefix("Value error, ")
    where = _flag(field) if field in TrainConfig.model_fields else "config"
    got = "" if first["type"] == "value_error" else f" (got {first.get('input')!r})"
    return f"{where}: {msg}{got}"


def _validate(values: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as err:
        raise ValueError(_validation_message(err)) from None


@dataclass
class Plan:
    """What one ``sinreq train`` command runs: ``runs`` (one run or a grid), or, with lambda
    tuning, the ``tune`` runs then ``finals[chosen lambda]`` (every candidate validated up front).
    """

    runs: list[TrainConfig]
    summary: Path | None = None
    tune: list[TrainConfig] = dataclass_field(default_factory=list)
    finals: dict[float, list[TrainConfig]] = dataclass_field(default_factory=dict)


def configs_from_args(args: argparse.Namespace) -> Plan:
    """Merge ``--config`` YAML and the flags given (flags win) into validated TrainConfigs.

    Without ``--grid`` that is one configuration. ``--grid seed=0,1 --grid lambda=0,1`` (or a
    ``grid:`` mapping in the YAML file) expands to the Cartesian product, each run in its own
    folder ``OUT/seed0-lambda0`` and so on. With ``--tune-lambdas`` the grid gives the final
    seeds (see :mod:`sinreq.tuning`). Everything is validated before anything runs.
    """
    values: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    if args.config:
        try:
            loaded = yaml.safe_load(Path(args.config).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"cannot read config {args.config}: {err}".splitlines()[0]) from None
        if not isinstance(loaded, dict):
            raise ValueError(f"config {args.config} must be a YAML mapping of option: value")
        grid = dict(loaded.pop("grid", None) or {})
        values = {_field_name(str(k)): v for k, v in loaded.items()}
    for item in args.grid or []:
        key, sep, listed = item.partition("=")
        if not sep or not listed:
            raise ValueError(f"--grid {item!r} must look like OPTION=V1,V2")
        grid[key] = listed.split(",")
    values.update(
        {k: v for k, v in vars(args).items() if k in TrainConfig.model_fields and v is not None}
    )
    tuning = getattr(args, "tune_lambdas", None) or getattr(args, "tune_seeds", None)
    if not grid and not tuning:
        return Plan([_validate(values)])
    if "out" not in values:
        raise ValueError("--out: missing; give the folder the grid's runs go into")
    summary = Path(args.grid_summary or Path(values["out"]) / "grid.json")
    if not tuning:
        return Plan(_expand(values, grid), summary)
    lambdas = _number_list("--tune-lambdas", args.tune_lambdas, float)
    tune_seeds = _number_list("--tune-seeds", args.tune_seeds, int)
    if set(grid) - {"seed"}:
        raise ValueError(f"--grid {next(iter(set(grid) - {'seed'}))}: with --tune-lambdas the "
                         "grid may vary only seed (the final seeds)")  # fmt: skip
    finals = {int(s) for s in grid.get("seed", [values.get("seed", 0)])}
    if finals & set(tune_seeds):
        both = min(finals & set(tune_seeds))
        raise ValueError(f"--tune-seeds {args.tune_seeds}: seed {both} is also a final seed; "
                         "allowed: seeds disjoint from --grid seed")  # fmt: skip
    root = Path(values["out"])
    grid = {"seed": sorted(finals)}
    tune = _expand({**values, "phase": "tune", "out": str(root / "tune")},
                   {"seed": tune_seeds, "lambda": lambdas})  # fmt: skip
    final = {"phase": "final", "out": str(root / "final")}
    return Plan(
        runs=[],
        summary=summary,
        tune=tune,
        finals={lam: _expand({**values, **final}, {**grid, "lambda": sorted({0.0, lam})})
                for lam in lambdas},
    )  # fmt: skip


def _number_list(flag: str, text: str | None, kind: type) -> list:
    try:
        numbers = [kind(x) for x in (text or "").split(",") if x.strip()]
    except ValueError:
        numbers = []
    if not numbers or any(x < 0 or x != x for x in numbers):
        raise ValueError(f"{flag} {text!r}: allowed: a comma-separated list of numbers >= 0")
    return numbers


def _expand(values: dict[str, Any], grid: dict[str, list[Any]]) -> list[TrainConfig]:
    """The Cartesian product of ``grid`` over ``values``, each run in ``OUT/<key><value>-...``."""
    keys = [_field_name(k) for k in grid]
    unknown = [k for k in keys if k not in TrainConfig.model_fields or k == "out"]
    if unknown:
        raise ValueError(f"--grid: cannot vary {unknown[0]!r}; allowed: any option except out")
    configs = []
    for combo in itertools.product(*(v if isinstance(v, list) else [v] for v in grid.values())):
        name = "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}"
                        for k, v in zip(grid, combo, strict=True))  # fmt: skip
        run = {
            **values,
            **dict(zip(keys, combo, strict=True)),
            "out": str(Path(values["out"]) / name),
        }
        configs.append(_validate(run))
    return configs


# ---------------------------------------------------------------------------------------------
# Provenance


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


# ---------------------------------------------------------------------------------------------
# Helpers


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a user error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda requested but no CUDA device is available; allowed: cpu")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def _get_rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def memory_format(device: torch.device, compile: bool) -> torch.memory_format:
    """``channels_last`` (NHWC) on CUDA and under ``--compile``, else the default NCHW.

    On CUDA NHWC feeds the tensor cores. On the CPU, inductor keeps NCHW tensors that the
    quantizers' backward needs in NCHW and transposes them around its NHWC convolutions: measured
    on ResNet-20 W4A4 + SinReQ (2 threads), compiled 1.12x the compiled FP32 step in NCHW, 1.03-
    1.08x in NHWC. Eager CPU training stays NCHW (the eager quantizers' ratio to FP32 is lower).
    """
    use_nhwc = device.type == "cuda" or compile
    return torch.channels_last if use_nhwc else torch.contiguous_format


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    amp: bool = False,
    layout: torch.memory_format = torch.contiguous_format,
) -> float:
    """Top-1 accuracy in percent (inputs in memory format ``layout``)."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = x.contiguous(memory_format=layout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            correct += (model(x).argmax(1) == y).sum().item()
        total += y.numel()
    return 100.0 * correct / max(total, 1)


@contextmanager
def snapped_weights(model: nn.Module, domain: str):
    """Temporarily replace every quantized layer's weight by the nearest level of its grid (in
    ``domain`` coordinates) and switch its quantizer off: the network the latent weights are."""
    saved = []
    for _, layer in quantized_layers(model):
        saved.append((layer, layer.weight.detach().clone(), layer.bits))
        x = weight_domain(layer.weight.detach(), layer.method, domain)
        layer.weight.data.copy_(nearest_level(x, layer.method, layer.bits))
        layer.bits = None
    try:
        yield model
    finally:
        for layer, weight, bits in saved:
            layer.weight.data.copy_(weight)
            layer.bits = bits


def recalibrate_batchnorm(model: nn.Module, loader, batches: int, device: torch.device) -> None:
    """Recompute BatchNorm running statistics over ``batches`` training batches (train-mode
    forward passes, no gradients): quantization changes every layer's weight scale, so the
    statistics left by the FP model or a short fine-tune describe another network.

    A no-op for networks without BatchNorm or ``batches == 0``. The batches come in a fixed order
    (the loader's generator is reseeded), and torch's global RNG is left as it was, so resuming a
    run gives the same numbers.
    """
    if batches == 0 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in
                               model.modules()):  # fmt: skip
        return
    loader.generator.manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.optim.swa_utils.update_bn(itertools.islice(loader, batches), model, device)


@torch.no_grad()
def grid_stats(model: nn.Module, domain: str) -> dict[str, dict[str, float]]:
    """Per quantized layer: bits, the fraction of weights near a level
    (:func:`~sinreq.regularizers.near_level_fraction`) and the mean ``sin^2(pi (x + s)/step)``,
    in ``domain`` coordinates: did the regularizer pull?"""
    from sinreq.regularizers import sin2

    out = {}
    for name, layer in quantized_layers(model):
        x = weight_domain(layer.weight.float(), layer.method, domain)
        out[name] = {
            "bits": layer.bits,
            "near_level_frac": near_level_fraction(x, layer.method, layer.bits),
            "sin2": sin2(x, layer.method, layer.bits, "latent").item(),  # x is already mapped
        }
    return out


def plot_weights(model: nn.Module, path: Path, title: str) -> None:
    """Histogram of the quantized layers' weights in their quantizer's level coordinates
    (``weight_domain(w, method, "normalized")``) with the level grid drawn as vertical lines;
    one panel per (method, bits) group of layers."""
    from sinreq.plotting import draw_weight_histogram, pyplot

    plt = pyplot()
    groups: dict[tuple[str, int], list[torch.Tensor]] = {}
    for _, layer in quantized_layers(model):
        x = weight_domain(layer.weight.detach().float().cpu(), layer.method, "normalized")
        groups.setdefault((layer.method, layer.bits), []).append(x.flatten())
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3), squeeze=False)
    for ax, ((method, bits), xs) in zip(axes.flat, sorted(groups.items()), strict=True):
        draw_weight_histogram(ax, torch.cat(xs), method, bits)
        ax.set_title(f"{method} {bits}-bit layers ({len(xs)})", fontsize=9)
        ax.set_xlabel("weight in level coordinates")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Training


def _check_resumable(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint in ``out`` if it belongs to the same configuration; None if there is none."""
    file = out / "checkpoint.pt"
    if not file.exists():
        return None
    try:
        ckpt = load_checkpoint(file)
    except ValueError as err:
        raise TrainingError(f"{err}; move it away to start over") from None
    old = {k: v for k, v in ckpt["config"].items() if k not in _NON_RESULT_FIELDS}
    new = {k: v for k, v in _result_config(cfg).items() if k not in _NON_RESULT_FIELDS}
    changed = sorted(k for k in new if old.get(k) != new[k])
    if changed:
        k = changed[0]
        raise TrainingError(
            f"{out} holds a run with another configuration ({k}: {old.get(k)!r} there, "
            f"{new[k]!r} now); use another --out"
        )
    return ckpt


def _result_config(cfg: TrainConfig) -> dict[str, Any]:
    return cfg.model_dump(by_alias=True, mode="json")


def build_training(
    cfg: TrainConfig, num_classes: int, device: torch.device
) -> tuple[nn.Module, Any, torch.optim.Optimizer]:
    """The model (built, initialised from ``--init-from``, quantized, on ``device``), the
    regularizer (None when lambda is 0) and the SGD optimizer that ``cfg`` describes."""
    model = models.build(cfg.model, num_classes, cfg.width)
    if cfg.init_from:
        try:
            model.load_state_dict(load_model_state(cfg.init_from))
        except ValueError as err:
            raise ValueError(f"--init-from: {err}") from None
        except RuntimeError as err:
            raise ValueError(
                f"--init-from: {cfg.init_from} does not fit {cfg.model} ({err})".splitlines()[0]
            ) from None
    if cfg.method != "fp":
        model = quantize_model(
            model, cfg.method, cfg.bits, cfg.act_bits, cfg.first_last, cfg.overrides
        )
    model.to(device, memory_format=memory_format(device, cfg.compile))
    regularizer = None
    if cfg.lam > 0:
        regularizer = build_regularizer(
            cfg.regularizer, model, cfg.lam, domain=cfg.domain, schedule=cfg.schedule,
            epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
            exclude_first_last=cfg.reg_exclude_first_last,
            bits=None if cfg.reg_all_widths else cfg.bits,
        )  # fmt: skip
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    return model, regularizer, optimizer


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or resume, or return the finished result of) the run described by ``cfg``."""
    from sinreq.data import build_splits, make_loaders

    # Everything that can fail on bad input happens before anything is written.
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    splits = build_splits(
        cfg.dataset, cfg.data_dir, val_fraction=cfg.val_fraction, split_seed=0, classes=cfg.classes
    )
    train_loader, val_loader, test_loader = make_loaders(
        splits, cfg.batch_size, seed=cfg.seed, workers=cfg.workers,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    model, regularizer, optimizer = build_training(cfg, splits.num_classes, device)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.lr_milestones, cfg.lr_gamma)
    amp = cfg.amp and device.type == "cuda"
    layout = memory_format(device, cfg.compile)
    out = Path(cfg.out)
    ckpt = _check_resumable(out, cfg)
    if ckpt is not None and ckpt["epoch"] >= cfg.epochs and (out / "metrics.json").exists():
        print(f"{out}: finished run, nothing to do", file=sys.stderr)
        return json.loads((out / "metrics.json").read_text())
    step_model = torch.compile(model) if cfg.compile else model

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep stderr for what matters
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    start_epoch, run_id = 0, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        start_epoch, history, run_id = ckpt["epoch"], ckpt["history"], ckpt["mlflow_run_id"]
    config = {**_result_config(cfg), **provenance()}
    layers = layer_table(model)
    _write_json(out / "config.json", config)
    _write_json(out / "layers.json", layers)

    mlflow.set_experiment(cfg.experiment)
    with mlflow.start_run(run_id=run_id, run_name=cfg.run_name()) as run:
        if run_id is None:
            _log_run_header(mlflow, cfg, config, layers, device)
        try:
            for epoch in range(start_epoch, cfg.epochs):
                epoch_start = time.perf_counter()
                row = _train_epoch(
                    step_model, regularizer, train_loader, optimizer, cfg, epoch, device, amp
                )
                scheduler.step()
                if cfg.method != "fp":
                    recalibrate_batchnorm(model, train_loader, cfg.bn_recalib_batches, device)
                row["val_acc"] = evaluate(step_model, val_loader, device, amp, layout)
                row["epoch_wall_s"] = time.perf_counter() - epoch_start
                history.append(row)
                mlflow.log_metrics(row, step=epoch + 1)
                state = {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                    "rng": _get_rng_state(), "history": history,
                    "mlflow_run_id": run.info.run_id, "config": _result_config(cfg),
                }  # fmt: skip
                save_checkpoint(state, out / "checkpoint.pt")
                print(_epoch_line(epoch, cfg.epochs, row), flush=True)
        except TrainingError as err:
            mlflow.set_tag("failure", str(err))
            mlflow.end_run(status="FAILED")
            raise
        metrics = _final_metrics(model, cfg, history, test_loader, device, amp)
        _write_json(out / "metrics.json", metrics)
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)})
        if cfg.method != "fp":
            plot_weights(model, out / "weights.png", cfg.run_name())
        for name in ("metrics.json", "config.json", "layers.json", "weights.png"):
            if (out / name).exists():
                mlflow.log_artifact(str(out / name))
    return metrics


def train_all(plan: Plan) -> None:
    """Run ``plan``: its runs in turn, or lambda tuning then the final seeds; with a grid, also
    write ``plan.summary``: the headline metrics of every run, keyed by its folder (a DVC
    metrics file)."""
    from sinreq.tuning import choose_lambda

    results = {_run_key(cfg): train(cfg) for cfg in plan.runs + plan.tune}
    if plan.tune:
        choice = choose_lambda([(c.lam, results[_run_key(c)]["val_acc"]) for c in plan.tune])
        _write_json(Path(plan.tune[0].out).parent.parent / "lambda_choice.json", choice)
        print(f"lambda {choice['chosen']:g} chosen on validation", file=sys.stderr)
        results.update({_run_key(c): train(c) for c in plan.finals[choice["chosen"]]})
    if plan.summary is not None:
        keep = ("test_acc", "val_acc", "near_level_frac", "sin2", "hard_round_test_acc")
        summary = {name: {k: m[k] for k in keep if k in m} for name, m in results.items()}
        plan.summary.parent.mkdir(parents=True, exist_ok=True)
        _write_json(plan.summary, summary)


def _run_key(cfg: TrainConfig) -> str:
    """``seed0-lambda1``, or ``tune/seed0-lambda1`` for a phase's run."""
    return (
        f"{cfg.phase}/{Path(cfg.out).name}"
        if cfg.phase in ("tune", "final")
        else Path(cfg.out).name
    )


def _log_run_header(
    mlflow, cfg: TrainConfig, config: dict, layers: list[dict], device: torch.device
) -> None:
    params = {
        k: json.dumps(v) if isinstance(v, list | dict) else v
        for k, v in _result_config(cfg).items()
    }
    params.update(
        {
            f"bits.{r['layer']}": r["weight_bits"]
            if r["kind"] != "QuantAct"
            else f"act{r['act_bits']}"
            for r in layers
        }
    )
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


def _train_epoch(
    model,
    regularizer,
    loader,
    optimizer,
    cfg: TrainConfig,
    epoch: int,
    device: torch.device,
    amp: bool,
) -> dict[str, float]:
    """One pass over the training set; returns mean CE, mean regularizer, lambda, accuracy,
    images per second."""
    from tqdm import tqdm

    model.train()
    layout = memory_format(device, cfg.compile)
    loader.generator.manual_seed(cfg.seed * 1000 + epoch)  # order is a function of (seed, epoch)
    n_batches = len(loader)
    ce_sum = reg_sum = correct = seen = 0.0
    lam = regularizer.lambda_at(epoch) if regularizer else 0.0
    start = time.perf_counter()
    bar = tqdm(
        loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not sys.stderr.isatty()
    )
    for i, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = x.contiguous(memory_format=layout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        ce = F.cross_entropy(logits.float(), y)
        loss = ce
        if regularizer is not None:
            reg = regularizer(epoch + i / n_batches)
            loss = ce + reg
            reg_sum += reg.detach() * y.numel()
        if not torch.isfinite(loss):
            raise TrainingError(
                f"training diverged at epoch {epoch + 1}, batch {i + 1}: loss is {loss.item()}; "
                "lower --lr or --lambda"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ce_sum += ce.detach() * y.numel()
        correct += (logits.argmax(1) == y).sum()
        seen += y.numel()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {
        "train_ce": float(ce_sum / seen), "train_reg": float(reg_sum / seen), "lambda": lam,
        "train_acc": float(100.0 * correct / seen), "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": seen / elapsed, "train_time_s": elapsed,
    }  # fmt: skip


def _epoch_line(epoch: int, epochs: int, row: dict[str, float]) -> str:
    return (
        f"epoch {epoch + 1}/{epochs}  ce {row['train_ce']:.4f}  reg {row['train_reg']:.4f}  "
        f"lambda {row['lambda']:g}  train {row['train_acc']:.2f}%  val {row['val_acc']:.2f}%  "
        f"{row['images_per_s']:.0f} img/s"
    )


def _final_metrics(
    model, cfg: TrainConfig, history: list[dict], test_loader, device: torch.device, amp: bool
) -> dict[str, Any]:
    """The final epoch's numbers. The test split is read here, once, after training: no epoch,
    lambda or configuration is ever selected on it."""
    layout = memory_format(device, cfg.compile)
    metrics: dict[str, Any] = {
        "test_acc": evaluate(model, test_loader, device, amp, layout),
        "val_acc": history[-1]["val_acc"], "epochs": len(history),
        "final_train_ce": history[-1]["train_ce"], "final_train_reg": history[-1]["train_reg"],
        "wall_time_s": sum(h["epoch_wall_s"] for h in history),
        "images_per_s": sum(h["images_per_s"] for h in history) / len(history),
    }  # fmt: skip
    if cfg.method != "fp":
        layers = grid_stats(model, cfg.domain)
        at_bits = [v for v in layers.values() if v["bits"] == cfg.bits]
        metrics["near_level_frac"] = sum(v["near_level_frac"] for v in at_bits) / len(at_bits)
        metrics["sin2"] = sum(v["sin2"] for v in at_bits) / len(at_bits)
        metrics["layers"] = layers
        with snapped_weights(model, cfg.domain):
            metrics["hard_round_test_acc"] = evaluate(model, test_loader, device, amp, layout)
    return metrics
