"""The reference file, ``sinreq check`` and ``sinreq references``.

``reports/paper_reference.yaml`` holds a ``claims`` list; each entry is a :class:`Claim`
(the schema is also described in the file's header). ``sinreq check`` recomputes each claim's
metric from ``results.csv`` and prints PASS (``|measured - expected| <= tolerance``), FAIL or
NOT MEASURED (out of scope, no matching runs, or no value recorded yet). A claim that names the
number of ``runs`` it averages FAILs when another number of runs matches (a lost arm or seed).

``sinreq references RESULTS --profile P`` writes a study's own regression references from its
committed ``results.csv`` (:func:`study_references`): per configuration
(:data:`~sinreq.report.results.CONFIG_KEYS`) and per arm (``fp``, ``q``, ``q+sinreq``,
``q+msqe``, ...), the mean final-seed test accuracy of the reported runs
(:func:`~sinreq.report.results.reported_runs`: no tuning runs; FP = the continued FP runs), with

    tolerance = clip(K * sd * sqrt(2 / n), FLOOR, CAP),   K = 3, FLOOR = 0.5, CAP = 0.9 points

where ``sd`` is that arm's sample standard deviation over its ``n`` final seeds.
``sd * sqrt(2 / n)`` is the standard error of the difference of two ``n``-seed means, so
``K = 3`` accepts a rerun on another machine even if float rounding decorrelated every seed
completely (a rerun then behaves like fresh seeds, the worst case). The floor covers arms whose
few seeds happen to agree (sd is poorly estimated from 5 seeds) and the measured machine noise:
a rerun with the same seeds moves each seed by up to about 0.64 points (W3A3; FP 0.17), whose
mean over 5 seeds has a standard deviation of about 0.64 / sqrt(3 * 5) = 0.17 if uniform, and
3 of those are 0.5. The cap keeps a shift of 1 point of any arm's final runs a FAIL (a margin of
0.1 point at least). An arm whose 3-sigma band exceeds the cap (or with a single seed, sd
unknown) cannot tell a 1-point regression from a rerun: its claim is written ``informational``,
at the cap. Every claim also records ``runs``: a lost run or arm FAILs.

``--rerun CSV`` (``benchmarks/rerun_runs.py``: the study's runs trained again with another
thread count) replaces the assumption by a measurement: an arm with at least two rerun runs
gets a band of at least ``K * rerun_rms / sqrt(n)``, ``rerun_rms`` the root mean square of its
runs' moves. At 2 bits single runs moved by up to 11 points (``reports/benchmark/ptq``), so no
5-seed quantized arm there can bind; FP runs moved by 0.3 at most.

Each regularized arm also gets a ``paired_gain`` claim (id ``.../<arm>/gain``): the mean over
seeds of its test accuracy minus that of ``q`` (lambda 0) of the same configuration and seed,
with the same rule applied to the per-seed gains (``sd`` their spread, ``rerun_rms`` that of
the gains' rerun moves). Both arms of a seed start from that seed's FP model, so the pair often
varies less than either run (LSQ at 2 bits: 3-sigma bands of 0.2-0.5 points against 0.8-1.2 for
the accuracies): a 1-point shift of an arm, or of ``q`` (every gain moves), then fails there.
That shared start does not cancel a rerun's machine noise (qat3: rerun rms 0.3-0.9 per gain),
so a gain claim binds only on a measured rerun (``--rerun``); without one it is informational.
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
    CONFIG_KEYS,
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
RunMetric = Literal["fp_test_acc", "test_acc", "paired_gain"]
SUMMARY_METRICS: tuple[str, ...] = get_args(SummaryMetric)
RUN_METRICS: tuple[str, ...] = get_args(RunMetric)
PASS, FAIL, NOT_MEASURED = "PASS", "FAIL", "NOT MEASURED"
# The tolerance rule of `sinreq references` (see the module docstring): K * sd * sqrt(2 / n),
# clipped to [FLOOR, CAP] accuracy points.
REFERENCE_K, REFERENCE_FLOOR, REFERENCE_CAP = 3.0, 0.5, 0.9

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
    never fail the check. ``runs`` (run metrics only): how many runs the mean must be over;
    another number of matching runs is a FAIL."""

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
    runs: int | None = Field(default=None, ge=1)
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
        elif self.runs is not None:
            raise ValueError(f"'runs' is for the run metrics ({', '.join(RUN_METRICS)}) only")
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


def _measure(
    claim: dict[str, Any], results: pd.DataFrame, summaries: dict
) -> tuple[float, int | None]:
    """``(value, runs)``: the value of ``claim``'s metric on ``results`` (NaN if it cannot be
    computed) and, for a run metric, the number of runs averaged (else None).
    ``summaries`` caches :func:`summary` per set of result rows."""
    metric = claim["metric"]
    if metric in SUMMARY_METRICS:
        rows = tuple(results.index)
        if rows not in summaries:
            summaries[rows] = summary(gap_table(results))
        key = summary_key(claim["method"], claim["arm"])
        return summaries[rows].get(key, {}).get(metric, math.nan), None
    select = dict(claim["select"])
    if metric == "fp_test_acc":
        select.update(method="fp", arm="fp")
    reported = reported_runs(with_defaults(results))
    chosen = reported[match(reported, select)]
    if metric == "paired_gain":
        chosen = paired_with_none(chosen, reported[match(reported, none_of(select))])
        return (float(chosen["gain"].mean()) if len(chosen) else math.nan), len(chosen)
    chosen = chosen["test_acc"].dropna()
    return (float(chosen.mean()) if len(chosen) else math.nan), len(chosen)


def none_of(select: dict[str, Any]) -> dict[str, Any]:
    """The selection of the unregularized arm ``q`` of the configuration ``select`` names."""
    return {k: v for k, v in select.items() if k not in ("arm", "lambda")} | {"arm": "q"}


def paired_with_none(runs: pd.DataFrame, none: pd.DataFrame) -> pd.DataFrame:
    """Per seed of ``runs`` (an arm's runs of one configuration) the gain over ``none`` (that
    configuration's ``q`` runs) of the same seed: columns ``seed``, ``gain`` = test_acc - the
    ``q`` run's, and both run folders ``path``, ``path_q``. Several ``q`` runs of one seed make
    the pairing ambiguous: a ValueError naming the seed."""
    columns = ["seed", "test_acc", "path"]
    none = none[columns].dropna()
    twice = none.loc[none["seed"].duplicated(), "seed"]
    if len(twice):
        paths = ", ".join(none.loc[none["seed"] == twice.iloc[0], "path"])
        raise ValueError(
            f"several q runs of seed {twice.iloc[0]:g} in one configuration ({paths}); "
            "allowed: one q run per seed and configuration"
        )
    pairs = runs[columns].dropna().merge(none, on="seed", suffixes=("", "_q"))
    return pairs.assign(gain=pairs["test_acc"] - pairs["test_acc_q"])


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
    measured, count = _measure(claim, subset, summaries)
    info = "informational: does not affect the exit code" if claim["informational"] else ""
    expected_runs = claim.get("runs")
    if expected_runs is not None and count != expected_runs and claim["expected"] is not None:
        note = f"{count} matching runs, {expected_runs} expected"
        return measured, FAIL, f"{note}; {info}" if info else note
    if not math.isfinite(measured):
        return measured, NOT_MEASURED, "no matching runs"
    if claim["expected"] is None:
        return measured, NOT_MEASURED, "reference not yet recorded"
    ok = abs(measured - claim["expected"]) <= claim["tolerance"] + 1e-9
    return measured, PASS if ok else FAIL, info


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


# ------------------------------------------------------------------------------------------------
# sinreq references: a study's own regression references from its committed results.csv


def reference_tolerance(
    sd: float,
    n: int,
    k: float = REFERENCE_K,
    floor: float = REFERENCE_FLOOR,
    cap: float = REFERENCE_CAP,
    rerun_rms: float = math.nan,
) -> tuple[float, bool]:
    """``(tolerance, informational)`` of an arm with seed standard deviation ``sd`` over ``n``
    seeds: ``clip(band, floor, cap)`` rounded to 0.01 point, ``band = k * sd * sqrt(2 / n)``, or
    ``k * rerun_rms / sqrt(n)`` where larger: ``rerun_rms``, the root mean square of how far
    a measured rerun on another thread count moved each of the arm's runs, is the machine noise
    of one run (NaN: not measured). ``informational`` when the band exceeds ``cap`` or ``sd``
    is unknown (``n < 2``)."""
    if n < 2 or not math.isfinite(sd):
        return cap, True
    band = k * sd * math.sqrt(2 / n)
    if math.isfinite(rerun_rms):
        band = max(band, k * rerun_rms / math.sqrt(n))
    return round(min(max(band, floor), cap), 2), band > cap


def rerun_moves(reruns: list[Path]) -> dict[str, float]:
    """Run folder -> how far a measured rerun moved its test accuracy (points), from the CSVs
    of ``benchmarks/rerun_runs.py`` (columns ``run`` and ``diff``)."""
    import pandas as pd

    moves: dict[str, float] = {}
    for path in reruns:
        try:
            table_ = pd.read_csv(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None
        if not {"run", "diff"} <= set(table_.columns):
            raise ValueError(f"{path}: allowed: a CSV of benchmarks/rerun_runs.py "
                             "(columns run, diff)")  # fmt: skip
        moves |= dict(zip(table_["run"], table_["diff"].astype(float), strict=True))
    return moves


def _plain(value: Any) -> Any:
    """A results cell as a YAML scalar: NaN / NA as None, numpy numbers as Python numbers."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _config_name(key: dict[str, Any]) -> str:
    """``dorefa_w3a3_8bit`` (``_x2`` appended for width 2; missing parts left out)."""
    act = f"a{key['act_bits']}" if key["act_bits"] else ""
    parts = [key["method"], *([f"w{key['bits']}{act}"] if key["bits"] else [])]
    parts += [str(key["first_last"])] if key["first_last"] else []
    width, layers = key.get("width"), key.get("layer_bits")
    if isinstance(layers, str) and layers:  # 0=3,3=2 -> layers0-3_3-2
        parts.append("layers" + layers.replace("=", "-").replace(",", "_"))
    return "_".join(parts) + (f"_x{width:g}" if width not in (None, 1.0) else "")


def study_references(
    results: pd.DataFrame,
    profile: str,
    source: str,
    k: float = REFERENCE_K,
    floor: float = REFERENCE_FLOOR,
    cap: float = REFERENCE_CAP,
    moves: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Regression claims (validated :class:`Claim` mappings) protecting the study ``profile`` of
    ``results``: one per (model, dataset, width) for FP (``fp_test_acc``) and one per
    configuration (:data:`~sinreq.report.results.CONFIG_KEYS`) and arm for the quantized runs
    (``test_acc`` selected by configuration and ``arm``, and by ``lambda`` when an arm's final
    runs have several): the mean test accuracy of the runs ``sinreq check`` averages
    (:func:`~sinreq.report.results.reported_runs`), ``runs`` their number, the tolerance by
    :func:`reference_tolerance` from their spread over seeds and, for arms with runs in
    ``moves`` (:func:`rerun_moves`; at least two), the measured rerun noise. Each regularized
    arm also gets its ``paired_gain`` over ``q`` by the same rule. ``source`` names the
    results."""
    df = with_defaults(results)
    if df["profile"].notna().any():
        df = df[df["profile"] == profile]
    reported = reported_runs(df)
    reported = reported[reported["test_acc"].notna()]
    if reported.empty:
        raise ValueError(f"no reported runs of profile {profile!r} with a test accuracy")
    groups: list[tuple[dict[str, Any], pd.DataFrame]] = []
    fp = reported[reported["arm"] == "fp"]
    for key, runs in fp.groupby(["model", "dataset", "width"], dropna=False):
        groups.append(({**dict(zip(("model", "dataset", "width"), key, strict=True))}, runs))
    others = reported[reported["arm"] != "fp"]  # quantized, or FP with a regularizer
    # layer_bits selects only where some configuration has a per-layer assignment
    keys = [k for k in CONFIG_KEYS if k != "layer_bits" or others[k].notna().any()] + ["arm"]
    for key, config in others.groupby(keys, dropna=False):
        key = dict(zip(keys, key, strict=True))
        several = config["lambda"].nunique(dropna=False) > 1
        for lam, runs in config.groupby("lambda", dropna=False) if several else [(None, config)]:
            groups.append(({**key, "lambda": lam} if several else key, runs))

    moves = moves or {}
    claims = []
    for key, runs in groups:
        key = {column: _plain(value) for column, value in key.items()}
        acc, n = runs["test_acc"], len(runs)
        moved = [moves[p] for p in runs["path"] if p in moves]
        sd, rms = _sd(acc), _rms(moved)
        tolerance, informational = reference_tolerance(sd, n, k, floor, cap, rms)
        arm = key.get("arm", "fp")
        where = f"{profile}/{key['model']}/{key['dataset']}"
        if arm == "fp":
            width = key["width"]
            name = f"{where}/fp" + (f"_x{width:g}" if width not in (None, 1.0) else "")
            what = "FP (continued)" if (runs["phase"] == "final").all() else "FP"
        else:
            name = f"{where}/{_config_name(key)}/{arm.replace(' ', ',')}"
            what = f"{_config_name(key).replace('_', ' ')} {arm}"
        lambdas = sorted({float(x) for x in runs["lambda"].dropna()})
        if arm not in ("fp", "q") and lambdas:
            what += f" (lambda {', '.join(f'{x:g}' for x in lambdas)})"
        if "lambda" in key:
            name += f",lambda={key['lambda']:g}"
        seed_sd = f"seed std {sd:.2f}" if math.isfinite(sd) else "a single seed: spread unknown"
        if math.isfinite(rms):
            seed_sd += f"; rerun rms {rms:.2f} over {len(moved)} runs"
        claim = {
            "id": name,
            "kind": "regression",
            "description": f"{what} on {key['model']}/{key['dataset']}, mean of {n} final seeds",
            "source": f"{source}; {seed_sd}",
            "metric": "fp_test_acc" if arm == "fp" else "test_acc",
            "select": key,
            "expected": round(float(acc.mean()), 3),
            "tolerance": tolerance,
            "runs": n,
            "scope": {
                "profile": [profile],
                "datasets": [key["dataset"]],
                "models": [key["model"]],
            },
            "informational": informational,
        }
        claims.append(_validated(claim, len(claims)))
        if arm not in ("fp", "q"):  # its gain over q, paired by seed
            pairs = paired_with_none(runs, reported[match(reported, none_of(key))])
            rule = (k, floor, cap)
            gain = _gain_claim(claim, what, source, pairs, moves, rule) if len(pairs) else None
            claims += [_validated(gain, len(claims))] if gain else []
    return claims


def _gain_claim(
    claim: dict[str, Any],
    what: str,
    source: str,
    pairs: pd.DataFrame,
    moves: dict[str, float],
    rule: tuple[float, float, float],
) -> dict[str, Any]:
    """The ``paired_gain`` claim beside the accuracy ``claim`` of the regularized arm ``what``,
    from its ``pairs`` (:func:`paired_with_none`): binding only where a rerun moved both runs
    of at least two pairs (the seeds' shared FP model cancels in a pair, float noise not)."""
    moved = [
        moves[a] - moves[b]
        for a, b in zip(pairs["path"], pairs["path_q"], strict=True)
        if a in moves and b in moves
    ]
    m, sd, rms = len(pairs), _sd(pairs["gain"]), _rms(moved)
    tolerance, informational = reference_tolerance(sd, m, *rule, rms)
    rerun = f"; rerun rms {rms:.2f} over {len(moved)} pairs"
    if not math.isfinite(rms):
        tolerance, informational, rerun = rule[2], True, "; no measured rerun"
    where = f"{claim['select']['model']}/{claim['select']['dataset']}"
    return claim | {
        "id": f"{claim['id']}/gain",
        "description": f"gain of {what} over q (lambda 0), paired by seed, on {where}, "
        f"mean of {m} seeds",
        "source": f"{source}; seed std of the gain {sd:.2f}{rerun}",
        "metric": "paired_gain",
        "expected": round(float(pairs["gain"].mean()), 3),
        "tolerance": tolerance,
        "runs": m,
        "informational": informational,
    }


def _sd(values: pd.Series) -> float:
    """The sample standard deviation (NaN for fewer than two values)."""
    return float(values.std()) if len(values) > 1 else math.nan


def _rms(moves: list[float]) -> float:
    """The root mean square of measured rerun moves (NaN for fewer than two)."""
    return math.sqrt(sum(d * d for d in moves) / len(moves)) if len(moves) > 1 else math.nan


def _marks(profile: str) -> tuple[str, str]:
    """The comment lines around the references of ``profile`` in a reference file."""
    return (
        f"  # >>> sinreq references --profile {profile} (generated: edit by re-running it)",
        f"  # <<< sinreq references --profile {profile}",
    )


def references_yaml(
    claims: list[dict[str, Any]],
    profile: str,
    command: str,
    rule: tuple[float, float, float] = (REFERENCE_K, REFERENCE_FLOOR, REFERENCE_CAP),
) -> str:
    """``claims`` as the entries of a ``claims:`` list (indented two spaces, one flow mapping
    per ``select`` / ``scope``), between the markers of ``profile``; ``command`` is the command
    line that re-records them and ``rule`` the ``(k, floor, cap)`` of their tolerances, both
    stated in the block's header."""
    import yaml

    def flow(value: Any) -> str:
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
        return text.strip().removesuffix("...").strip()

    begin, end = _marks(profile)
    lines = [
        begin,
        f"  # Re-record: {command}",
        "  # expected: mean test top-1 of the arm's final runs (n = runs); sd: their seed std;",
        f"  # tolerance = clip({rule[0]:g} * sd * sqrt(2 / n), {rule[1]:g}, {rule[2]:g}) points, "
        f"or {rule[0]:g} * rerun_rms / sqrt(n)",
        "  # where larger (an arm with a measured rerun: its source says so; see the header).",
    ]
    keys = ("id", "kind", "description", "source", "metric", "select", "expected", "tolerance")
    for claim in claims:
        lines.append(f"  - id: {flow(claim['id'])}")
        lines += [f"    {key}: {flow(claim[key])}" for key in keys[1:]]
        lines.append(f"    runs: {claim['runs']}")
        scope = {k: v for k, v in claim["scope"].items() if v is not None}
        lines.append(f"    scope: {flow(scope)}")
        if claim["informational"]:
            lines.append("    informational: true  # its spread is too wide to catch 1 point")
    lines.append(end)
    return "\n".join(lines) + "\n"


def write_references(reference: Path, block: str, profile: str) -> str:
    """Put ``block`` (from :func:`references_yaml`) into the reference file: in place of the
    previous block of ``profile``, else at the end of the file (the ``claims`` list must come
    last). The file is written only if the result loads (:func:`load_reference`: no duplicate
    id, valid YAML); returns ``"replaced"`` or ``"appended"``."""
    import os
    import tempfile

    begin, end = _marks(profile)
    try:
        text = reference.read_text()
    except FileNotFoundError:
        raise ValueError(f"reference file {reference} not found") from None
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    if starts:
        ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == end and i > starts[0]]
        if len(starts) > 1 or not ends:
            raise ValueError(f"{reference}: the markers of profile {profile!r} are broken")
        new, how = "".join(lines[: starts[0]]) + block + "".join(lines[ends[0] + 1 :]), "replaced"
    else:
        new, how = text + ("" if text.endswith("\n") else "\n") + "\n" + block, "appended"
    with tempfile.NamedTemporaryFile(
        "w", dir=reference.parent, prefix=f".{reference.name}.", suffix=".tmp", delete=False
    ) as tmp:
        tmp.write(new)
    try:
        load_reference(Path(tmp.name))
    except ValueError as err:
        os.unlink(tmp.name)
        raise ValueError(str(err).replace(tmp.name, str(reference))) from None
    os.replace(tmp.name, reference)
    return how


def references_command(
    results: Path,
    profile: str | None = None,
    write: Path | None = None,
    k: float = REFERENCE_K,
    floor: float = REFERENCE_FLOOR,
    cap: float = REFERENCE_CAP,
    reruns: list[Path] | None = None,
) -> int:
    """Print the regression references of the study in ``results`` (:func:`study_references`)
    as reference-file entries, or, with ``write``, put them into that reference file (replacing
    the profile's previous ones). ``profile`` defaults to the single one recorded in
    ``results``."""
    if not 0 <= floor <= cap or k <= 0:
        raise ValueError(f"need 0 <= --floor <= --cap and --k > 0, got {floor}, {cap}, {k}")
    table_ = read_results(results)
    profile = profile or _results_profile(table_)
    if profile is None:
        raise ValueError(f"{results}: no single profile recorded; pass --profile")
    moves = rerun_moves(reruns or [])
    source = f"{results} via sinreq references"
    claims = study_references(table_, profile, source, k, floor, cap, moves)
    rule = (
        ""
        if (k, floor, cap) == (REFERENCE_K, REFERENCE_FLOOR, REFERENCE_CAP)
        else (f" --k {k:g} --floor {floor:g} --cap {cap:g}")
    ) + "".join(f" --rerun {path}" for path in reruns or [])
    command = f"sinreq references {results} --profile {profile}{rule}" + (
        f" --write {write}" if write else ""
    )
    block = references_yaml(claims, profile, command, (k, floor, cap))
    if write is None:
        print(block, end="")
        return 0
    how = write_references(write, block, profile)
    print(f"sinreq references: {len(claims)} claims of profile {profile!r} {how} in {write}")
    return 0
