"""What one training run is: :class:`TrainConfig` (every option of ``sinreq train``) and the
command line that builds it: flags generated from its fields, an optional YAML file (flags win),
``--grid`` products and the lambda-tuning :class:`Plan`."""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sinreq import models
from sinreq.data import DATASETS
from sinreq.quant import check_bits
from sinreq.regularizers import check_lambda, check_warmup_epochs

# Fields that do not change the numbers a run produces: a resumed run may differ in these.
NON_RESULT_FIELDS = {
    "out",
    "tracking_uri",
    "experiment",
    "device",
    "workers",
    "profile",
    "stage",
    "phase",
    "parent_run_id",
}


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
    warmup_epochs: float = Field(5.0, description="epochs of the linear warm-up (> 0)")
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
    epochs: int = Field(10, ge=0, description="training epochs (0: evaluate --init-from)")
    max_steps: int | None = Field(
        None, ge=1, description="at most this many training batches per epoch (smoke tests)"
    )
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
    parent_run_id: str | None = Field(None, description="MLflow run this run is a child of")
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

    # the regularizer's own checks, so the CLI and the library reject the same values
    _lambda_range = field_validator("lam")(check_lambda)
    _warmup_range = field_validator("warmup_epochs")(check_warmup_epochs)

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
        "--grid",
        action="append",
        metavar="OPTION=V1,V2",
        help="train every combination of these values, each run in OUT/<option><value>-...",
    )
    parser.add_argument(
        "--grid-summary",
        metavar="FILE",
        help="where a grid writes its runs' metrics (OUT/grid.json)",
    )
    parser.add_argument(
        "--tune-lambdas",
        metavar="L1,L2",
        help="choose lambda on validation: --tune-seeds run every value (OUT/tune/), then the "
        "--grid seeds run lambda 0 and the best (OUT/final/)",
    )
    parser.add_argument(
        "--tune-seeds", metavar="S1,S2", help="seeds of the lambda tuning (not the final seeds)"
    )
    parser.add_argument(
        "--launcher-from",
        metavar="PARAMS.yaml",
        help="run the runs with this file's launcher block: inline, local workers, or Slurm",
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
    folder: Path | None = None  # a grid's folder: its runs, lambda_choice.json, MLflow parent

    def with_parent(self, run_id: str | None) -> Plan:
        """This plan with every run a child of MLflow run ``run_id``."""

        def child(cfgs: list[TrainConfig]) -> list[TrainConfig]:
            return [c.model_copy(update={"parent_run_id": run_id}) for c in cfgs]

        finals = {lam: child(cfgs) for lam, cfgs in self.finals.items()}
        return Plan(child(self.runs), self.summary, child(self.tune), finals, self.folder)


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
        return Plan(_expand(values, grid), summary, folder=Path(values["out"]))
    return _tuning_plan(values, grid, args, summary)


def _tuning_plan(
    values: dict[str, Any], grid: dict[str, list[Any]], args: argparse.Namespace, summary: Path
) -> Plan:
    """``--tune-lambdas``: the tuning runs (every lambda x tuning seed) and, per candidate
    lambda, the final runs (lambda 0 and it x the --grid seeds), all validated up front."""
    lambdas = _number_list("--tune-lambdas", args.tune_lambdas, float)
    tune_seeds = _number_list("--tune-seeds", args.tune_seeds, int)
    if set(grid) - {"seed"}:
        raise ValueError(
            f"--grid {next(iter(set(grid) - {'seed'}))}: with --tune-lambdas the "
            "grid may vary only seed (the final seeds)"
        )
    finals = {int(s) for s in grid.get("seed", [values.get("seed", 0)])}
    if finals & set(tune_seeds):
        both = min(finals & set(tune_seeds))
        raise ValueError(
            f"--tune-seeds {args.tune_seeds}: seed {both} is also a final seed; "
            "allowed: seeds disjoint from --grid seed"
        )
    root = Path(values["out"])
    grid = {"seed": sorted(finals)}
    tune = _expand(
        {**values, "phase": "tune", "out": str(root / "tune")},
        {"seed": tune_seeds, "lambda": lambdas},
    )
    final = {"phase": "final", "out": str(root / "final")}
    return Plan(
        runs=[],
        summary=summary,
        folder=root,
        tune=tune,
        finals={
            lam: _expand({**values, **final}, {**grid, "lambda": sorted({0.0, lam})})
            for lam in lambdas
        },
    )


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
        name = "-".join(
            f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}"
            for k, v in zip(grid, combo, strict=True)
        )
        run = {
            **values,
            **dict(zip(keys, combo, strict=True)),
            "out": str(Path(values["out"]) / name),
        }
        configs.append(_validate(run))
    return configs


def result_config(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as JSON-ready values, keyed by flag name (``lambda``, not ``lam``)."""
    return cfg.model_dump(by_alias=True, mode="json")


def differing_result_field(old: dict[str, Any], cfg: TrainConfig) -> str | None:
    """The first field that changes a run's numbers and differs between ``old`` and ``cfg``."""
    new = {k: v for k, v in result_config(cfg).items() if k not in NON_RESULT_FIELDS}
    changed = sorted(k for k in new if old.get(k) != new[k])
    return changed[0] if changed else None
