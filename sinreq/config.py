"""What one training run is: :class:`TrainConfig` (every option of ``sinreq train``) and the
command line that builds it: flags generated from its fields, an optional YAML file (flags win),
``--grid`` products and the lambda-tuning :class:`Plan`."""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sinreq import models
from sinreq.data import DATASETS
from sinreq.quant.functional import check_bits
from sinreq.regularizers import REGULARIZERS, SCHEDULES, check_lambda, check_warmup_epochs
from sinreq.regularizers.base import validate_options

LAMBDA = "regularizer.lambda"  # the key lambda tuning varies

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
    "on_collapse",  # what happens after a collapse, not the numbers up to it (sinreq.train)
    "plot_weights",
}


# Fields added after runs were recorded, with the value those runs had: dropped from the
# result-relevant configuration at that value, so that the older runs keep their hash.
ADDED_FIELDS: dict[str, Any] = {"quant.ptq": False}


def _none_word(v: Any) -> Any:
    """``none``, ``null`` and the empty string mean "not set" (as DVC renders nulls)."""
    return None if isinstance(v, str) and v.strip().lower() in ("", "none", "null") else v


def _float_word(bits: str) -> bool:
    """``none`` / ``fp``: a layer left in float by ``quant.overrides``."""
    return bits.strip().lower() in ("none", "fp")


def check_model(name: str) -> str:
    """``name`` if it is a registered network, else a one-line ValueError listing them."""
    if name not in models.available():
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(models.available())}")
    return name


def check_dataset(name: str) -> str:
    """``name`` if it is a known dataset, else a one-line ValueError listing them."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return name


class QuantConfig(BaseModel):
    """The ``quant:`` block: which quantizer, at which bits, on which layers."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "fp", description="weight (and activation) quantizer: fp (none) or a registered one"
    )
    bits: int = Field(4, description="weight bits (2..8)")
    act_bits: int | None = Field(
        None, description="activation bits (2..8); 'bits' = same as bits; none = ReLU"
    )
    first_last: Literal["fp", "8bit", "quantize"] = Field(
        "8bit", description="first/last layer: keep float, 8 bits, or quantize like the rest"
    )
    overrides: dict[str, int | None] = Field(
        default_factory=dict,
        description="per-layer bits: PATTERN=BITS (fnmatch on layer names, later wins; BITS "
        "'none' = float), e.g. the authors' mixed assignments",
    )
    ptq: bool = Field(
        False,
        description="post-training quantization: train with float weights (the quantizer only "
        "gives a regularizer its grid), quantize by round-to-nearest for every evaluation, and "
        "record test accuracy at 2..8 bits (ptq_test_acc)",
    )

    @field_validator("name")
    @classmethod
    def _known_quantizer(cls, v: str) -> str:
        from sinreq.quant import QUANTIZERS

        if v != "fp" and v not in QUANTIZERS:
            raise ValueError(
                f"unknown quantizer {v!r}; allowed: fp, {', '.join(QUANTIZERS.available())}"
            )
        return v

    @field_validator("act_bits", mode="before")
    @classmethod
    def _act_bits_word(cls, v: Any, info) -> Any:
        v = _none_word(v)
        return info.data.get("bits") if v == "bits" else v

    @field_validator("bits", "act_bits")
    @classmethod
    def _bits_range(cls, v: int | None, info) -> int | None:
        return v if v is None else check_bits(v, info.field_name)

    @field_validator("overrides", mode="before")
    @classmethod
    def _parse_overrides(cls, v: Any) -> Any:
        if isinstance(v, list | str):  # repeated --quant.overrides PATTERN=BITS, or "a=3,b=5"
            items = [i for part in ([v] if isinstance(v, str) else v) for i in part.split(",")]
            pairs = [item.split("=", 1) for item in items if _none_word(item) is not None]
            bad = [p for p in pairs if len(p) != 2 or not (p[1].isdigit() or _float_word(p[1]))]
            if bad:
                raise ValueError(
                    f"overrides {'='.join(bad[0])!r}: allowed PATTERN=BITS (BITS 2..8 or none)"
                )
            v = {k: None if _float_word(b) else int(b) for k, b in pairs}
        return {k: b if b is None else check_bits(b, f"bits of {k!r}") for k, b in v.items()}


class RegularizerConfig(BaseModel):
    """The ``regularizer:`` block: which weight regularizer, how strong, when, with what options
    (validated by the plugin's own ``Options``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field("sinreq", description="weight regularizer (a registered one)")
    lam: float = Field(0.0, alias="lambda", description="regularizer strength (0 = none)")
    schedule: str | None = Field(
        None, description="lambda schedule (constant, warmup, tanh, cosine); none = the plugin's"
    )
    warmup_epochs: float = Field(5.0, description="epochs of the linear warm-up (> 0)")
    options: dict[str, Any] = Field(
        default_factory=dict, validate_default=True, description="the regularizer's own options"
    )

    _lambda_range = field_validator("lam")(check_lambda)
    _warmup_range = field_validator("warmup_epochs")(check_warmup_epochs)

    @field_validator("name")
    @classmethod
    def _known_regularizer(cls, v: str) -> str:
        REGULARIZERS.get(v)
        return v

    @field_validator("schedule", mode="before")
    @classmethod
    def _known_schedule(cls, v: Any) -> Any:
        v = _none_word(v)
        if v is not None:
            SCHEDULES.get(v)
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any], info) -> dict[str, Any]:
        if info.data.get("name") not in REGULARIZERS:
            return v  # the name's own error says it
        return validate_options(REGULARIZERS.get(info.data["name"]), v).model_dump(mode="json")

    @property
    def domain(self) -> str:
        """Where grid statistics are taken (the regularizer's domain, else normalized)."""
        return self.options.get("domain", "normalized")


class ArmConfig(RegularizerConfig):
    """One arm of a benchmark: an entry of a ``regularizer:`` *list* in a profile (or in the
    ``--regularizer-from`` file). Each arm is tuned on validation over its own ``lambdas``
    (default: ``--tune-lambdas``) and its final runs are paired by seed with lambda 0 (none)."""

    lambdas: str | None = Field(None, description="lambdas to tune for this arm (L1,L2)")

    @field_validator("lambdas", mode="before")
    @classmethod
    def _lambda_list(cls, v: Any) -> str | None:
        v = _none_word(v)
        return v if v is None else ",".join(map(str, number_list("", str(v), float)))


class TrainConfig(BaseModel):
    """Everything that defines a training run. Each field is a ``--kebab-case`` flag and a key of
    the ``--config`` YAML file (flags win); the ``quant`` and ``regularizer`` blocks are nested
    (``--quant.bits 3``, ``--regularizer.options.domain latent``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    model: str = Field(description=f"network: {', '.join(models.available())}")
    dataset: str = Field("digits", description=f"dataset: {', '.join(DATASETS)}")
    data_dir: str = Field("data", description="folder holding downloaded datasets")
    classes: int | None = Field(None, ge=2, description="keep the first N classes (imagenet)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="validation hold-out of train")
    quant: QuantConfig = Field(default_factory=QuantConfig, description="quantization")
    regularizer: RegularizerConfig = Field(
        default_factory=RegularizerConfig, description="weight regularizer"
    )
    width: float = Field(1.0, gt=0, description="width multiplier (WRPN widening)")
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
    plot_weights: bool = Field(
        True,
        description="draw weights.png, the quantized layers' weight histograms (about 0.15 s "
        "a run; the report draws its own)",
    )
    profile: str | None = Field(None, description="pipeline profile (recorded as a tag)")
    stage: str | None = Field(None, description="pipeline stage (recorded as a tag)")
    parent_run_id: str | None = Field(None, description="MLflow run this run is a child of")
    phase: Literal["baseline", "tune", "final"] | None = Field(
        None, description="study phase: FP baseline, lambda tuning, or final seeds"
    )
    # -- collapse guard (sinreq.train.collapse_reason); not result-relevant (NON_RESULT_FIELDS)
    on_collapse: Literal["stop", "continue"] = Field(
        "stop",
        description="a collapsed run: stop (exit 2) or continue with a warning line; either way "
        "metrics.json records 'collapsed'. Collapsed: a non-finite loss (always stops), an "
        "epoch's mean cross-entropy above 10 x ln(classes), or, for a fine-tune (--init-from), "
        "validation accuracy after a whole first epoch (not cut by --max-steps) at or below "
        "1.5 x chance (100/classes percent), at most chance + 5 points",
    )

    @field_validator("init_from", "classes", mode="before")
    @classmethod
    def _none_words(cls, v: Any) -> Any:
        return _none_word(v)

    _known_model = field_validator("model")(check_model)
    _known_dataset = field_validator("dataset")(check_dataset)

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
        if self.init_from and not self.init_from.startswith("torchvision:"):
            self.init_from = resolve_run_folder(self.init_from)
        reg = self.regularizer
        if self.quant.name == "fp" and reg.lam > 0 and REGULARIZERS.get(reg.name).needs_grid:
            raise ValueError(
                f"regularizer {reg.name} with lambda={reg.lam:g} needs a quantized model; "
                f"allowed: a quant.name other than fp, or a regularizer without a grid (kure)"
            )
        schedule = reg.schedule or REGULARIZERS.get(reg.name).default_schedule
        if schedule == "warmup" and reg.lam > 0 and reg.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs={reg.warmup_epochs} exceeds epochs={self.epochs}")
        return self

    def run_name(self) -> str:
        """A readable name for the run, e.g. ``resnet20-cifar10-dorefa-w4a4-sinreq1-s0``."""
        q, reg = self.quant, self.regularizer
        parts = [self.model, self.dataset, q.name]
        if q.name != "fp":
            parts.append(f"w{q.bits}" + (f"a{q.act_bits}" if q.act_bits else ""))
        if reg.lam > 0:
            parts.append(
                f"{reg.name}{reg.lam:g}"
                + (f"-{reg.options['domain']}" if "domain" in reg.options else "")
            )
        return "-".join(parts + [f"s{self.seed}"])


# ---------------------------------------------------------------------------------------------
# Command line: flags generated from TrainConfig, merged over the optional YAML config.


NESTED: dict[str, type[BaseModel]] = {"quant": QuantConfig, "regularizer": RegularizerConfig}


def option_fields() -> dict[str, tuple[Any, str]]:
    """Every option of every registered regularizer: its field and a help line naming the
    plugins that have it (``--regularizer.options.<name>``)."""
    found: dict[str, tuple[Any, list[str]]] = {}
    for name in REGULARIZERS.available():
        for opt, field in REGULARIZERS.get(name).Options.model_fields.items():
            found.setdefault(opt, (field, []))[1].append(name)
    return {
        opt: (field, f"{_help(field)[:-1]}; for {', '.join(names)})")
        for opt, (field, names) in found.items()
    }


def _flags(path: str) -> list[str]:
    """``--quant.act-bits`` and its DVC spelling ``--quant.act_bits``."""
    return sorted({"--" + path.replace("_", "-"), "--" + path})


def _add_flag(parser: argparse.ArgumentParser, path: str, field: Any, help: str) -> None:
    kwargs: dict[str, Any] = {"dest": path, "default": None, "help": help}
    closed = _registry_values().get(path) or _literal_values(field.annotation)
    if field.annotation is bool:
        kwargs.update(nargs="?", const="true", metavar="true|false")
    elif closed:  # shown as argparse shows choices; pydantic still validates (one-line errors)
        kwargs.update(metavar="{" + ",".join(closed) + "}")
    elif path == "quant.overrides":
        kwargs.update(action="append", metavar="PATTERN=BITS")
    elif "tuple" in str(field.annotation):
        kwargs.update(type=lambda text: tuple(p for p in text.split(",") if p), metavar="P1,P2")
    parser.add_argument(*_flags(path), **kwargs)


def _literal_values(annotation: Any) -> list[str]:
    """The values of a ``Literal[...]`` annotation (also inside ``Literal[...] | None``)."""
    from typing import get_args, get_origin

    if get_origin(annotation) is Literal:
        return [str(v) for v in get_args(annotation)]
    return [v for arg in get_args(annotation) for v in _literal_values(arg)]


def _registry_values() -> dict[str, list[str]]:
    """The allowed values of the flags that name a plugin, read when the parser is built (after
    ``$SINREQ_PLUGINS`` is imported, so that plugins are listed)."""
    from sinreq.quant import QUANTIZERS

    return {
        "quant.name": ["fp", *QUANTIZERS.available()],
        "regularizer.name": REGULARIZERS.available(),
        "regularizer.schedule": SCHEDULES.available(),
    }


def _shown(value: Any) -> str:
    """A default as it is written on the command line: ``none``, ``true``, ``a,b``."""
    if value is None or (isinstance(value, list | tuple | dict) and not value):
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _help(field: Any, path: str = "") -> str:
    """``field``'s description, then its default (``required`` when it has none) and, for a
    closed set (a Literal, or a registry's names), the allowed values."""
    allowed = _registry_values().get(path) or _literal_values(field.annotation)
    if field.is_required():
        shown = "required"
    else:
        shown = f"default {_shown(field.get_default(call_default_factory=True))}"
    if allowed:
        shown += f"; allowed: {', '.join(allowed)}"
    return f"{field.description} ({shown})"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` flag per TrainConfig field (``--quant.<field>``,
    ``--regularizer.<field>``, ``--regularizer.options.<option>`` for the nested blocks),
    ``--config FILE.yaml``, ``--grid`` and the lambda tuning."""
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML file with any of the options below (flags win; default none)",
    )
    parser.add_argument(
        "--grid",
        action="append",
        metavar="OPTION=V1,V2",
        help="train every combination of these values, each run in OUT/<option><value>-<hash> "
        "(repeatable; default none: one run in OUT)",
    )
    parser.add_argument(
        "--grid-summary",
        metavar="FILE",
        help="where a grid writes its runs' metrics (default OUT/grid.json)",
    )
    parser.add_argument(
        "--tune-lambdas",
        metavar="L1,L2",
        help="choose lambda on validation: --tune-seeds run every value (OUT/tune/), then the "
        "--grid seeds run lambda 0 and the best (OUT/final/) (default none: no tuning)",
    )
    parser.add_argument(
        "--tune-seeds",
        metavar="S1,S2",
        help="seeds of the lambda tuning, not the final seeds (default none; needed with "
        "--tune-lambdas)",
    )
    parser.add_argument(
        "--launcher-from",
        metavar="PARAMS.yaml",
        help="run the runs with this file's launcher block: inline, local workers, or Slurm "
        "(default none: inline, one run after another in this process)",
    )
    parser.add_argument(
        "--regularizer-from",
        metavar="PARAMS.yaml",
        help="take the regularizer block (name, schedule, options) from this file (flags win; "
        "default none)",
    )
    from sinreq.registry import load_plugins

    try:  # `sinreq train` has done it (and reported a failure): here for build_parser's callers
        load_plugins()  # before reading the registries: plugins' names and options are listed
    except ValueError:
        pass
    for name, field in TrainConfig.model_fields.items():
        if name not in NESTED:
            _add_flag(parser, field.alias or name, field, _help(field, field.alias or name))
            continue
        for sub, subfield in NESTED[name].model_fields.items():
            path = f"{name}.{subfield.alias or sub}"
            if sub != "options":
                _add_flag(parser, path, subfield, _help(subfield, path))
        if name == "regularizer":
            for opt, (optfield, text) in option_fields().items():
                _add_flag(parser, f"regularizer.options.{opt}", optfield, text)


def _field_name(key: str) -> str:
    """The TrainConfig field for a flag or YAML key (``data-dir`` -> ``data_dir``)."""
    return key.replace("-", "_")


def _set(values: dict[str, Any], path: str, value: Any) -> None:
    """``values[a][b][c] = value`` for ``path`` ``a.b.c`` (missing levels created)."""
    *parents, last = [_field_name(p) for p in path.split(".")]
    for key in parents:
        values = values.setdefault(key, {})
    values[last] = value


def _where(loc: tuple, flags: bool) -> str:
    """Where an error is: a flag (``--regularizer.lambda``; ``lam``, the field behind the alias,
    is ``lambda``; list positions left out) or a params key path (``networks.0.fp.lr``)."""
    if not flags:
        return ".".join(str(p) for p in loc)
    path = ".".join(str(p) for p in loc if not isinstance(p, int))
    return "--" + ("regularizer.lambda" if path == "regularizer.lam" else path)


def validation_message(err: ValidationError, flags: bool = True) -> str:
    """Every error of ``err`` in one line: ``--flag: why (got value); ...`` (``key.path: ...``
    with ``flags=False``)."""
    parts = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p not in ("one", "arms"))  # a union's branch tags
        where = _where(loc, flags) if loc else "config"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown option {where.removeprefix('--')!r}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        got = "" if e["type"] == "value_error" else f" (got {e.get('input')!r})"
        parts.append(f"{where}: {msg}{got}")
    return "; ".join(parts)


def _validate(values: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as err:
        raise ValueError(validation_message(err)) from None


@dataclass
class Plan:
    """What one ``sinreq train`` command runs: ``runs`` (one run or a grid), or, with lambda
    tuning, per arm (a regularizer's label) its ``tune`` runs (lambda 0's shared by every arm),
    then the ``baseline`` (lambda 0) and ``finals[arm][chosen lambda]`` runs of the final seeds
    (every candidate validated up front)."""

    runs: list[TrainConfig]
    summary: Path | None = None
    tune: dict[str, list[TrainConfig]] = dataclass_field(default_factory=dict)
    finals: dict[str, dict[float, list[TrainConfig]]] = dataclass_field(default_factory=dict)
    baseline: list[TrainConfig] = dataclass_field(default_factory=list)
    folder: Path | None = None  # a grid's folder: its runs, lambda_choice.json, MLflow parent

    @property
    def tune_runs(self) -> list[TrainConfig]:
        """Every tuning run once (lambda 0 is shared by the arms)."""
        return list({c.out: c for cfgs in self.tune.values() for c in cfgs}.values())

    def all_runs(self) -> list[TrainConfig]:
        """Every run the plan may train, each once."""
        finals = [c for by_lam in self.finals.values() for cfgs in by_lam.values() for c in cfgs]
        return self.runs + self.tune_runs + self.baseline + finals

    def with_parent(self, run_id: str | None) -> Plan:
        """This plan with every run a child of MLflow run ``run_id``."""

        def child(cfgs: list[TrainConfig]) -> list[TrainConfig]:
            return [c.model_copy(update={"parent_run_id": run_id}) for c in cfgs]

        tune = {arm: child(cfgs) for arm, cfgs in self.tune.items()}
        finals = {
            arm: {lam: child(cfgs) for lam, cfgs in by_lam.items()}
            for arm, by_lam in self.finals.items()
        }
        return Plan(child(self.runs), self.summary, tune, finals, child(self.baseline), self.folder)


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
    arms = None
    if getattr(args, "regularizer_from", None):
        block = _block(args.regularizer_from, "regularizer", list)
        if isinstance(block, list):
            arms = block
        else:
            values["regularizer"] = {**block, **values.get("regularizer", {})}
    for item in args.grid or []:
        key, sep, listed = item.partition("=")
        if not sep or not listed:
            raise ValueError(f"--grid {item!r} must look like OPTION=V1,V2")
        grid[key] = listed.split(",")
    for path, value in vars(args).items():
        if value is not None and path.split(".")[0] in TrainConfig.model_fields:
            _set(values, path, value)
    tuning = getattr(args, "tune_lambdas", None) or getattr(args, "tune_seeds", None)
    if arms is not None and (not tuning or "regularizer" in values):
        raise ValueError(
            f"--regularizer-from {args.regularizer_from}: a list of regularizers (arms) needs "
            "--tune-lambdas and --tune-seeds, and no --regularizer.* flags"
        )
    if not grid and not tuning:
        return Plan([_validate(values)])
    if "out" not in values:
        raise ValueError("--out: missing; give the folder the grid's runs go into")
    summary = Path(args.grid_summary or Path(values["out"]) / "grid.json")
    if not tuning:
        return Plan(_expand(values, grid), summary, folder=Path(values["out"]))
    return _tuning_plan(values, grid, args, summary, arms)


def _arms(values: dict[str, Any], arms: list[Any] | None) -> dict[str, ArmConfig]:
    """The arms by label: the regularizer's name, ``name-2`` ... for a name listed again (the
    authors' setting beside a tuned one). Without a list, the one ``regularizer`` block."""
    try:
        parsed = [ArmConfig.model_validate(a) for a in (arms or [values.get("regularizer", {})])]
    except ValidationError as err:
        raise ValueError(f"regularizer: {validation_message(err, flags=False)}") from None
    labels: dict[str, ArmConfig] = {}
    for arm in parsed:
        count = sum(a.name == arm.name for a in labels.values())
        labels[arm.name if not count else f"{arm.name}-{count + 1}"] = arm
    return labels


def _tuning_plan(
    values: dict[str, Any],
    grid: dict[str, list[Any]],
    args: argparse.Namespace,
    summary: Path,
    arms: list[Any] | None = None,
) -> Plan:
    """``--tune-lambdas``: per arm, the tuning runs (every lambda x tuning seed) and, per
    candidate lambda, its final runs (x the --grid seeds), beside the final seeds' lambda-0
    runs, all validated up front."""
    lambdas = number_list("--tune-lambdas", args.tune_lambdas, float)
    tune_seeds = number_list("--tune-seeds", args.tune_seeds, int)
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
    seeds = sorted(finals)
    labelled = _arms(values, arms)
    plan = Plan(runs=[], summary=summary, folder=root)
    for label, arm in labelled.items():
        own = number_list(f"regularizer {label} lambdas", arm.lambdas, float) if arm.lambdas else []
        if own and 0.0 in lambdas and 0.0 not in own:
            own = [0.0, *own]  # --tune-lambdas' 0: the shared validation reference
        arm_values = {**values, "regularizer": arm.model_dump(by_alias=True, exclude={"lambdas"})}
        tag = label if len(labelled) > 1 else ""  # arms' run names differ by their label
        plan.tune[label] = _expand(
            {**arm_values, "phase": "tune", "out": str(root / "tune")},
            {"seed": tune_seeds, LAMBDA: own or lambdas},
            tag,
        )
        plan.finals[label] = {
            lam: _expand(
                {**arm_values, "phase": "final", "out": str(root / "final")},
                {"seed": seeds, LAMBDA: [lam]},
                tag,
            )
            for lam in own or lambdas
            if lam > 0
        }
        if not plan.finals[label]:
            raise ValueError(f"--tune-lambdas: arm {label} has no lambda > 0 to choose")
    first = next(iter(labelled.values())).model_dump(by_alias=True, exclude={"lambdas"})
    plan.baseline = _expand(
        {**values, "regularizer": first, "phase": "final", "out": str(root / "final")},
        {"seed": seeds, LAMBDA: [0.0]},
    )
    return plan


def number_list(where: str, text: str | None, kind: type) -> list:
    """The numbers of the comma-separated ``text`` (each ``kind``, >= 0), or a one-line
    ValueError that starts with ``where`` (a flag, or nothing)."""
    try:
        numbers = [kind(x) for x in (text or "").split(",") if x.strip()]
    except ValueError:
        numbers = []
    if not numbers or any(x < 0 or x != x for x in numbers):
        raise ValueError(
            f"{where} {text!r}".strip() + ": allowed: a comma-separated list of numbers >= 0"
        )
    return numbers


def _expand(values: dict[str, Any], grid: dict[str, list[Any]], tag: str = "") -> list[TrainConfig]:
    """The Cartesian product of ``grid`` over ``values``, each run in ``OUT/<name>-<hash>``: a
    readable name from the varied values (``seed0-lambda0.1``; an arm's ``tag`` appended when
    its lambda is > 0: ``seed0-lambda0.1-msqe``) and the first 8 hex digits of
    the hash of everything that changes its numbers (:func:`config_hash`), so that a run of
    another configuration never lands in (or resumes) this one's folder."""
    unknown = [k for k in grid if k.split(".")[0] not in TrainConfig.model_fields or k == "out"]
    if unknown:
        raise ValueError(f"--grid: cannot vary {unknown[0]!r}; allowed: any option except out")
    configs = []
    for combo in itertools.product(*(v if isinstance(v, list) else [v] for v in grid.values())):
        name = "-".join(
            f"{k.rsplit('.', 1)[-1]}{float(v):g}" if k == LAMBDA else f"{k.rsplit('.', 1)[-1]}{v}"
            for k, v in zip(grid, combo, strict=True)
        )
        if tag and float(dict(zip(grid, combo, strict=True)).get(LAMBDA, 0)) > 0:
            name = f"{name}-{tag}"
        run = copy.deepcopy(values)
        for key, value in zip(grid, combo, strict=True):
            _set(run, key, value)
        cfg = _validate({**run, "out": str(Path(values["out"]) / name)})
        configs.append(cfg.model_copy(update={"out": f"{cfg.out}-{config_hash(cfg)}"}))
    return configs


def config_hash(cfg: TrainConfig) -> str:
    """8 hex digits of the SHA-256 of the result-relevant configuration (JSON, sorted keys)."""
    relevant = result_relevant(result_config(cfg))
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]


def grid_run_name(folder: str | Path) -> str:
    """A grid run's readable name: its folder's name without the ``-<hash>`` suffix."""
    return re.sub(r"-[0-9a-f]{8}$", "", Path(folder).name)


def write_index(cfgs: list[TrainConfig]) -> None:
    """``index.json`` in each grid folder: readable run name -> its folder (the current
    configuration's), so that ``--init-from OUT/seed0`` finds the run of today's parameters."""
    folders: dict[Path, dict[str, str]] = {}
    for cfg in cfgs:
        out = Path(cfg.out)
        folders.setdefault(out.parent, {})[grid_run_name(out)] = out.name
    for folder, index in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


def resolve_run_folder(path: str) -> str:
    """``path`` itself when it exists; else the folder its grid's ``index.json`` names for it
    (``runs/fp/net/seed0`` -> ``runs/fp/net/seed0-1a2b3c4d``); else ``path`` unchanged."""
    folder = Path(path)
    index = folder.parent / "index.json"
    if folder.exists() or not index.is_file():
        return path
    name = json.loads(index.read_text()).get(folder.name)
    return str(folder.parent / name) if name else path


def _block(file: str, key: str, *also: type) -> Any:
    """The ``key:`` mapping of YAML ``file`` (or one of the types ``also``); a one-line error
    when unreadable or absent."""
    try:
        block = (yaml.safe_load(Path(file).read_text()) or {}).get(key)
    except (OSError, yaml.YAMLError, AttributeError) as err:
        raise ValueError(f"cannot read {file}: {err}".splitlines()[0]) from None
    if not isinstance(block, (dict, *also)):
        raise ValueError(f"{file} has no {key}: mapping")
    return block


def result_config(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as JSON-ready values, keyed by flag name (``lambda``, not ``lam``)."""
    return cfg.model_dump(by_alias=True, mode="json")


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``config`` with nested keys spelled ``quant.bits``, ``regularizer.options.domain``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and key in ("quant", "regularizer", "options"):
            out |= flat_config(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def result_relevant(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a run's configuration (flattened, ``a.b``) that change its numbers: not
    where it runs or is tracked (:data:`NON_RESULT_FIELDS`), not the regularizer's settings at
    lambda 0, not the quantizer's when there is none (``quant.name`` fp)."""
    flat = flat_config({k: v for k, v in config.items() if k not in NON_RESULT_FIELDS})
    unused = []
    if not flat.get(LAMBDA):
        unused.append("regularizer.")
    if flat.get("quant.name") == "fp":
        unused.append("quant.")
    return {
        k: v
        for k, v in flat.items()
        if (k in (LAMBDA, "quant.name") or not k.startswith(tuple(unused)))
        and ADDED_FIELDS.get(k, k) != v
    }


def differing_result_field(old: dict[str, Any], cfg: TrainConfig) -> str | None:
    """The first field (``a.b`` for nested ones) that changes a run's numbers and differs
    between the configuration ``old`` and ``cfg`` (see :func:`result_relevant`)."""
    new, old = result_relevant(result_config(cfg)), result_relevant(old)
    changed = sorted(k for k in new if old.get(k) != new[k])
    return changed[0] if changed else None


def result_value(config: dict[str, Any], field: str) -> Any:
    """``config``'s value of ``field`` (``a.b`` for nested ones)."""
    return flat_config(config).get(field)
