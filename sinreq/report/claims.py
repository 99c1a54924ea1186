"""The reference file and ``sinreq check``: claims judged against the results table.

``reports/paper_reference.yaml`` holds a ``claims`` list; each entry is a :class:`Claim`
(the schema is also described in the file's header). ``sinreq check`` recomputes each claim's
metric from ``results.csv`` and prints PASS (``|measured - expected| <= tolerance``), FAIL or
NOT MEASURED (out of scope, no matching runs, or no value recorded yet).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from sinreq.report.results import (
    PRIMARY_ARM,
    RESULT_COLUMNS,
    match,
    read_results,
    reported_runs,
    summary_key,
    with_defaults,
)
from sinreq.report.tables import gap_table, summary
from sinreq.report.text import fmt, table

if TYPE_CHECKING:
    import pandas as pd

SummaryMetric = Literal["closure_mean_of_ratios", "closure_ratio_of_means", "mean_gain_points"]
RunMetric = Literal["fp_test_acc", "test_acc"]
SUMMARY_METRICS: tuple[str, ...] = get_args(SummaryMetric)
RUN_METRICS: tuple[str, ...] = get_args(RunMetric)
PASS, FAIL, NOT_MEASURED = "PASS", "FAIL", "NOT MEASURED"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Scope(BaseModel):
    """When a claim can be judged: results of one of these profiles that hold all of these
    datasets and models (each a name or a list of names; the metric uses only those)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    profile: list[Text] | None = None
    datasets: list[Text] | None = None
    models: list[Text] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _name_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Claim(BaseModel):
    """One reference entry: ``metric`` (of the summary of quantizer ``method`` and regularized
    ``arm``, by default SinReQ's, or the mean test accuracy of the runs matching ``select``)
    should be ``expected`` within ``tolerance`` (absolute, in the metric's units).
    ``expected: null`` = not recorded yet; ``informational`` claims are judged and shown but
    never fail the check."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: Text
    kind: Literal["claim", "reference", "regression"]
    description: Text
    source: Text
    metric: Literal[SummaryMetric, RunMetric]
    method: str | None = None
    arm: Text = PRIMARY_ARM
    select: dict[str, Any] | None = None
    expected: FiniteFloat | None
    tolerance: float = Field(ge=0, allow_inf_nan=False)
    scope: Scope = Field(default_factory=Scope)
    informational: bool = False

    @model_validator(mode="after")
    def _metric_has_its_inputs(self) -> Claim:
        """Summary metrics need a quantizer ``method``; run metrics a ``select`` of columns."""
        if self.metric in SUMMARY_METRICS and (not self.method or self.method == "fp"):
            raise ValueError(
                f"metric {self.metric!r} needs 'method' (a quantizer's name), got {self.method!r}"
            )
        if self.metric in RUN_METRICS:
            if not self.select:
                raise ValueError(
                    f"metric {self.metric!r} needs 'select', a mapping of result columns to values"
                )
            unknown = [column for column in self.select if column not in RESULT_COLUMNS]
            if unknown:
                allowed = ", ".join(RESULT_COLUMNS)
                raise ValueError(f"unknown 'select' column {unknown[0]!r}; allowed: {allowed}")
        return self


def _problem(err: ValidationError) -> str:
    """The first problem pydantic found, in one line naming the key (an unknown key first: a
    misspelt key also shows up as a missing one)."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(part) for part in first["loc"]]
    if first["type"] == "extra_forbidden":
        model, where = (Scope, "scope ") if loc[0] == "scope" else (Claim, "")
        return f"unknown {where}key {loc[-1]!r}; allowed: {', '.join(model.model_fields)}"
    if first["type"] == "missing":
        return f"missing key {loc[-1]!r}"
    if first["type"] == "value_error":  # the cross-field rules above
        return first["msg"].removeprefix("Value error, ")
    where = f"{'.'.join(loc)!r}: " if loc else ""
    return f"{where}{first['msg']}, got {first['input']!r}"


def _validated(entry: Any, index: int) -> dict[str, Any]:
    """``entry`` as a validated claim (every key present), else a one-line ValueError naming it."""
    name = f"#{index + 1}"
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        name = repr(entry["id"])
    try:
        return Claim.model_validate(entry).model_dump()
    except ValidationError as err:
        raise ValueError(f"reference entry {name}: {_problem(err)}") from None


def load_reference(path: Path) -> list[dict[str, Any]]:
    """The validated ``claims`` of a reference YAML file (:class:`Claim` fields as a mapping).

    Any problem is a one-line ValueError naming the entry, or the file.
    """
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"reference file {path} not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: unreadable YAML ({err})".replace("\n", " ")) from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ValueError(f"{path}: the top level must be a mapping with a 'claims' list")
    claims = [_validated(entry, i) for i, entry in enumerate(data["claims"])]
    ids = [c["id"] for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"reference entry {duplicates[0]!r}: the id is used more than once")
    return claims


def paper_values(claims: list[dict[str, Any]] | None) -> dict[str, dict[str, float]]:
    """``{summary key: {metric: expected}}`` of the paper's claims (``kind: claim``) in the
    reference (keys as :func:`~sinreq.report.results.summary_key`)."""
    values: dict[str, dict[str, float]] = {}
    for claim in claims or []:
        if claim["kind"] == "claim" and claim.get("method") and claim["expected"] is not None:
            key = summary_key(claim["method"], claim["arm"])
            values.setdefault(key, {}).setdefault(claim["metric"], claim["expected"])
    return values


def paper_closure(paper: dict[str, dict[str, float]], key: str) -> float | None:
    """The paper's closure for summary ``key`` (whichever definition the reference uses)."""
    values = paper.get(key, {})
    return values.get("closure_mean_of_ratios", values.get("closure_ratio_of_means"))


def _measure(claim: dict[str, Any], results: pd.DataFrame, summaries: dict) -> float:
    """The value of ``claim``'s metric on ``results`` (NaN if it cannot be computed).
    ``summaries`` caches :func:`summary` per set of result rows."""
    metric = claim["metric"]
    if metric in SUMMARY_METRICS:
        rows = tuple(results.index)
        if rows not in summaries:
            summaries[rows] = summary(gap_table(results))
        key = summary_key(claim["method"], claim["arm"])
        return summaries[rows].get(key, {}).get(metric, math.nan)
    select = dict(claim["select"])
    if metric == "fp_test_acc":
        select.update(method="fp", arm="fp")
    reported = reported_runs(with_defaults(results))
    chosen = reported[match(reported, select)]["test_acc"].dropna()
    return float(chosen.mean()) if len(chosen) else math.nan


def _in_scope(
    scope: dict[str, list[str] | None], results: pd.DataFrame, profile: str | None
) -> tuple[pd.DataFrame | None, str]:
    """``(the rows of results in scope, "")``, or ``(None, why not)`` when out of scope."""
    if scope["profile"] is not None:
        if profile is None:
            return None, f"needs profile {'/'.join(scope['profile'])}; pass --profile"
        if profile not in scope["profile"]:
            return None, f"profile {profile!r} is out of scope"
    subset = results
    for key, column in (("datasets", "dataset"), ("models", "model")):
        if scope[key] is not None:
            missing = [w for w in scope[key] if w not in set(results[column].dropna())]
            if missing:
                return None, f"no {column} {', '.join(missing)} in results"
            subset = subset[subset[column].isin(scope[key])]
    return subset, ""


def _judge(
    claim: dict[str, Any], results: pd.DataFrame, profile: str | None, summaries: dict
) -> tuple[float, str, str]:
    """``(measured, verdict, note)``: NOT MEASURED unless the claim's scope is in ``results``
    and a value is recorded (the measured value is still shown, to be recorded)."""
    subset, why = _in_scope(claim["scope"], results, profile)
    if subset is None:
        return math.nan, NOT_MEASURED, why
    measured = _measure(claim, subset, summaries)
    if not math.isfinite(measured):
        return measured, NOT_MEASURED, "no matching runs"
    if claim["expected"] is None:
        return measured, NOT_MEASURED, "reference not yet recorded"
    ok = abs(measured - claim["expected"]) <= claim["tolerance"] + 1e-9
    note = "informational: does not affect the exit code" if claim["informational"] else ""
    return measured, PASS if ok else FAIL, note


def _results_profile(results: pd.DataFrame) -> str | None:
    """The single profile recorded in ``results``, or None when there are none or several."""
    profiles = set(results["profile"].dropna())
    return profiles.pop() if len(profiles) == 1 else None


def check_command(results: Path, reference: Path, profile: str | None = None) -> int:
    """Print every claim of ``reference`` beside the value measured in ``results`` and a verdict.

    A claim is judged (PASS when ``|measured - expected| <= tolerance``, else FAIL) only if its
    scope holds: ``scope.profile`` contains ``profile`` (default: the single profile recorded in
    ``results``), every ``scope.datasets`` / ``scope.models`` entry is present in ``results``
    (the metric is then computed on those datasets and models only), a value is recorded
    (``expected`` not null) and the runs it needs exist; otherwise it is NOT MEASURED.
    Returns 1 if a judged, non-informational claim FAILs, else 0.
    """
    claims = load_reference(reference)
    results_table = read_results(results)
    recorded = _results_profile(results_table)
    profile = profile if profile is not None else recorded
    rows, failed, counts, summaries = [], False, {PASS: 0, FAIL: 0, NOT_MEASURED: 0}, {}
    for claim in claims:
        measured, verdict, note = _judge(claim, results_table, profile, summaries)
        counts[verdict] += 1
        failed |= verdict == FAIL and not claim["informational"]
        rows.append(
            {
                "id": claim["id"],
                "description": claim["description"],
                "expected": fmt(claim["expected"], "g"),
                "measured": fmt(measured),
                "tolerance": fmt(claim["tolerance"], "g"),
                "verdict": verdict,
                "note": note,
            }
        )
    print(table(rows) if rows else "no claims")
    print(
        f"\n{counts[PASS]} pass, {counts[FAIL]} fail, {counts[NOT_MEASURED]} not measured "
        f"(profile: {profile or 'unknown'}"
        + (f", but the results record {recorded!r}" if recorded and recorded != profile else "")
        + f"; results: {results})"
    )
    return 1 if failed else 0
