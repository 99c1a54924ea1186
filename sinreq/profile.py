"""A pipeline profile (``params.yaml``), checked whole before any stage trains: ``sinreq params``.

Unknown keys and bad values anywhere in the file are reported together, in one line naming each
(``networks.0.fp.lr: ...; regularizer.options: ...``). The training recipes (``fp``, ``quant``
of each network) and the regularizer block are checked by the same models ``sinreq train`` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from sinreq.config import (
    NESTED,
    ArmConfig,
    QuantConfig,
    RegularizerConfig,
    TrainConfig,
    check_dataset,
    check_model,
    number_list,
    validation_message,
)
from sinreq.launch import Launcher
from sinreq.quant import FIRST_LAST_POLICIES, QUANTIZERS, check_bits


def _numbers(text: Any, kind: type) -> str:
    """``text`` if it is a comma-separated list of numbers >= 0 (:func:`number_list`)."""
    number_list("", str(text), kind)
    return str(text)


class Seeds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tune: str
    final: str

    @field_validator("tune", "final", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> str:
        return _numbers(v, int)


class Network(BaseModel):
    """One entry of ``networks``: the net, its data, its lambda grid and its two recipes."""

    model_config = ConfigDict(extra="forbid")
    model: str
    dataset: str
    lambdas: str
    act_bits: int | Literal["bits"] | None = None
    fp: dict[str, Any] = Field(default_factory=dict)
    quant: dict[str, Any] = Field(default_factory=dict)

    _model = field_validator("model")(check_model)
    _dataset = field_validator("dataset")(check_dataset)

    @field_validator("lambdas", mode="before")
    @classmethod
    def _lambdas(cls, v: Any) -> str:
        return _numbers(v, float)

    @model_validator(mode="after")
    def _recipes(self) -> Network:
        """Each recipe must be options of ``sinreq train`` (not its nested blocks)."""
        problems = []
        for name, recipe in (("fp", self.fp), ("quant", self.quant)):
            nested = sorted(set(recipe) & set(NESTED))
            if nested:
                problems.append(f"{name}.{nested[0]}: set it in the profile's {nested[0]} block")
                continue
            # DVC unpacks a recipe into flags and writes a boolean only when true (--key)
            dropped = sorted(key for key, value in recipe.items() if value is False)
            if dropped:
                problems.append(
                    f"{name}.{dropped[0]}: false is dropped by DVC's flag unpacking; write 'false'"
                )
            try:
                TrainConfig.model_validate(
                    {"model": self.model, "dataset": self.dataset, "out": "x", **recipe}
                )
            except ValidationError as err:
                problems.append(f"{name}: {validation_message(err, flags=False)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class QuantBlock(BaseModel):
    """The ``quant`` block: the stage matrix (quantizers x bits) and what every run shares."""

    model_config = ConfigDict(extra="forbid")
    name: list[str]
    bits: list[int]
    first_last: str = "8bit"
    init_from: str | None = None
    bn_recalib_batches: int = Field(50, ge=0)
    ptq: bool = False  # post-training quantization: train float, quantize after (sinreq.ptq)
    # per-layer bits, PATTERN=BITS,... (the authors' mixed assignments); none: uniform ``bits``
    overrides: str = "none"

    @field_validator("name")
    @classmethod
    def _quantizers(cls, v: list[str]) -> list[str]:
        for name in v:
            QUANTIZERS.get(name)
        return v

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        return [check_bits(b) for b in v]

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, v: str) -> str:
        QuantConfig(overrides=v)  # the train flag's own check: one line naming the bad part
        return v

    @field_validator("first_last")
    @classmethod
    def _first_last(cls, v: str) -> str:
        if v not in FIRST_LAST_POLICIES:
            allowed = ", ".join(FIRST_LAST_POLICIES)
            raise ValueError(f"unknown first/last-layer policy {v!r}; allowed: {allowed}")
        return v


class Profile(BaseModel):
    """The whole ``params.yaml`` of a profile."""

    model_config = ConfigDict(extra="forbid")
    profile: str
    report_dir: str = "reports"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data_dir: str = "data"
    datasets: list[str]
    tracking_uri: str
    experiment: str
    seeds: Seeds
    networks: list[Network] = Field(min_length=1)
    quant: QuantBlock
    regularizer: Annotated[
        Annotated[RegularizerConfig, Tag("one")] | Annotated[list[ArmConfig], Tag("arms")],
        Discriminator(lambda v: "arms" if isinstance(v, list) else "one"),
    ]  # one regularizer (a mapping), or a benchmark's arms (a list)
    reference: str
    not_applicable: dict[str, str] = Field(
        default_factory=dict, description="a benchmark's arms it does not run, and why"
    )
    launcher: Launcher = Field(default_factory=Launcher)

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: list[str]) -> list[str]:
        return [check_dataset(d) for d in v]


def check_profile(path: Path) -> Profile:
    """The profile at ``path``, validated; a one-line ValueError naming every problem."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: {' '.join(str(err).split())}") from None
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"{path}: {validation_message(err, flags=False)}") from None
