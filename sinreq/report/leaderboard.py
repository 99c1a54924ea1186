"""The benchmark's leaderboard: every regime's arms side by side, ``sinreq leaderboard``.

Each regime is a study report ``reports/benchmark/<regime>/results.csv``. Per regime, method and
regularized arm the row is that arm's pooled paired test against ``q`` (lambda 0, same seeds):
the mean over configurations of the per-seed gain, a one-sample t test over seeds (the seed is
the unit: every configuration of seed s starts from seed s's FP model), its 95 % t interval, and
Holm's correction over *every* row of the benchmark (all regimes together). Beside it: the mean
gap from FP to Q, the closure ``100 mean(gain) / mean(gap)`` with its seed-bootstrap 95 %
interval, the lambda(s) chosen on validation, and the paper's claim beside SinReQ's rows. Arms a
regime does not run are listed as ``n/a`` with the reason its profile gives (``not_applicable``).
Where a regime was rerun (``<regime>/rerun_*.csv`` of ``benchmarks/rerun_runs.py``), each rerun's
gain and 95 % interval are shown beside the row (not Holm-corrected): does the verdict replicate?
Where a regime was confirmed on fresh seeds (``<regime>/confirm*/results.csv``, in the order
``confirm``, ``confirm2``, ...: each profile fixes its arms' lambdas to the regime's validated
choices and runs seeds no earlier run of the regime used), each confirmation's pooled test is shown
beside the row, Holm-corrected over that confirmation's arms only: a family decided in advance,
on data that did not suggest it. ``confirmations.csv`` holds them, one row per confirmation and
arm.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sinreq.report.results import CONFIG_KEYS, read_results
from sinreq.report.tables import (
    ALPHA,
    arm_groups,
    gap_table,
    method_statistics,
    seed_matrices,
    summary,
)
from sinreq.report.text import fmt, interval, name, regularizer_name, table

if TYPE_CHECKING:
    import pandas as pd

# The arms every regime is expected to run (``n/a`` with a reason where one does not apply).
ARMS = ("q+sinreq", "q+msqe", "q+dampen", "q+kure", "q+binreg")
COLUMNS = (
    "regime method arm configs seeds gain ci_low ci_high p p_holm verdict gap closure "
    "closure_ci_low closure_ci_high lambdas paper_gain reruns confirmations"
).split()
CONFIRM_COLUMNS = (
    "regime confirmation final_seeds method arm gain ci_low ci_high p_holm seeds verdict".split()
)


REGIMES = ("paper", "qat", "qat3", "lsq", "lsq3", "ptq", "ptq3")  # the issue's order, then by name


def _verdict(gain: float, p_holm: float) -> str:
    """``gain`` / ``harm`` when Holm rejects, else ``no detectable effect`` (the interval says
    how large an effect the data still allow)."""
    if not math.isfinite(p_holm):
        return "untested"
    if p_holm < ALPHA:
        return "gain" if gain > 0 else "harm"
    return "no detectable effect"


def regime_rows(
    regime: str, results: pd.DataFrame, gap: pd.DataFrame, paper: dict[str, float]
) -> list[dict]:
    """The leaderboard rows of one regime (its ``gap_table``: ``gap``; Holm not applied yet)."""
    stats, summ = method_statistics(results, gap), summary(gap)
    rows = []
    for key, method, arm in arm_groups(gap):
        s, m = stats[key], summ[key]
        arm_gap = gap[(gap["method"] == method) & (gap["arm"] == arm)]
        lambdas = sorted({f"{lam:g}" for lam in arm_gap["lambda"].dropna()})
        sinreq = arm.split(" ")[0] == "q+sinreq"
        rows.append(
            {
                "regime": regime,
                "method": method,
                "arm": arm,
                "configs": m["n_configs"],
                "seeds": s["pooled_n_seeds"],
                "gain": s["pooled_gain"],
                "ci_low": s["pooled_ci_low"],
                "ci_high": s["pooled_ci_high"],
                "p": s["pooled_p"],
                "gap": m["mean_gap_points"],
                "closure": m["closure_ratio_of_means"],
                "closure_ci_low": s["closure_ratio_of_means_ci_low"],
                "closure_ci_high": s["closure_ratio_of_means_ci_high"],
                "lambdas": ",".join(lambdas),
                "paper_gain": paper.get(method, math.nan) if sinreq else math.nan,
            }
        )
    return rows


def rerun_gains(results: pd.DataFrame, rerun: Path) -> dict[tuple[str, str], str]:
    """``{(method, arm): "gain [95 % CI]"}`` of one rerun of the regime: the recorded final runs
    moved by the rerun's ``diff``, those the rerun lacks left out (an arm rerun at another
    lambda, or not rerun, has none; the gain needs no FP run), then the row's pooled test (no
    closure bootstrap: not shown); ``(n=k)`` when fewer seeds than recorded remain."""
    from sinreq.report.claims import rerun_moves
    from sinreq.stats import pooled_test

    moves = rerun_moves([rerun])
    kept = results[(results["phase"] == "tune") | results["path"].isin(moves)].copy()
    kept["test_acc"] += kept["path"].map(moves).fillna(0.0)
    seeds = results[results["phase"] == "final"]["seed"].nunique()
    found = {}
    for (method, arm), (_, q, qs) in seed_matrices(kept).items():
        pooled = pooled_test(qs - q, ALPHA)
        if math.isfinite(pooled.mean):
            n = f" (n={pooled.n})" if pooled.n < seeds else ""
            found[(method, arm)] = (
                f"{fmt(pooled.mean, '+.2f')} {interval(pooled.ci_low, pooled.ci_high)}{n}"
            )
    return found


def _settings(gap: pd.DataFrame, method: str, arm: str) -> dict[tuple, str]:
    """``{configuration: lambda}`` of one method and arm's comparisons in ``gap``."""
    rows = gap[(gap["method"] == method) & (gap["arm"] == arm)]
    keys = rows[list(CONFIG_KEYS)].astype(str).itertuples(index=False, name=None)
    return dict(zip(keys, (f"{lam:g}" for lam in rows["lambda"]), strict=True))


def _seed_list(seeds: set[int]) -> str:
    """``5-12`` for a run of consecutive seeds, else ``1,4,9``."""
    ordered = sorted(seeds)
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))


def confirmation_rows(
    ours: pd.DataFrame, confirm: pd.DataFrame, used: set[int]
) -> list[dict[str, Any]]:
    """The rows (:data:`CONFIRM_COLUMNS` but the regime's and the confirmation's names) of the
    confirmation ``confirm`` of the regime whose ``gap_table`` is ``ours``: each arm's pooled
    test and its p Holm-corrected over the confirmation's own arms (:func:`method_statistics`).
    It confirms nothing (its verdict says so, no numbers) where a final seed of it is in
    ``used`` (the seeds of the regime and of its earlier confirmations), or an arm ran other
    configurations or lambdas than the regime's."""
    gap = gap_table(confirm)
    stats = method_statistics(confirm, gap)
    finals = set(confirm.loc[confirm["phase"] == "final", "seed"].dropna().astype(int))
    reused = sorted(finals & used)
    rows = []
    for key, method, arm in arm_groups(gap):
        s, why = stats[key], ""
        if reused:
            why = f"seed {reused[0]} is also a seed of an earlier run of the regime"
        elif _settings(gap, method, arm) != _settings(ours, method, arm):
            why = "other configurations or lambdas than the regime's"
        found = {"final_seeds": _seed_list(finals), "method": method, "arm": arm}
        rows.append(
            found | {"verdict": f"not a confirmation: {why}"}
            if why
            else found
            | {
                "gain": s["pooled_gain"],
                "ci_low": s["pooled_ci_low"],
                "ci_high": s["pooled_ci_high"],
                "p_holm": s["pooled_p_holm"],
                "seeds": s["pooled_n_seeds"],
                "verdict": _verdict(s["pooled_gain"], s["pooled_p_holm"]),
            }
        )
    return rows


def confirmations(
    regime: str, recorded: pd.DataFrame, gap: pd.DataFrame, folder: Path
) -> list[dict[str, Any]]:
    """Every confirmation of the regime ``recorded`` (its ``gap_table``: ``gap``;
    ``folder/confirm/results.csv``, then
    ``confirm2``, ``confirm3``, ... in that order; other names are not confirmations), each
    checked for fresh seeds against the regime and the confirmations before it."""
    found = {}
    for path in folder.glob("confirm*/results.csv"):
        number = re.fullmatch(r"confirm(\d*)", path.parent.name)
        if number:
            found[int(number.group(1) or 1)] = path
    used = set(recorded["seed"].dropna().astype(int))
    rows = []
    for _, path in sorted(found.items()):
        confirm = read_results(path)
        named = {"regime": regime, "confirmation": path.parent.name}
        rows += [named | r for r in confirmation_rows(gap, confirm, used)]
        used |= set(confirm["seed"].dropna().astype(int))
    return rows


def _not_run(regime: str, methods: list[str], present: set[str], reasons: dict) -> list[dict]:
    """``n/a`` rows for the expected arms a regime did not run, with the profile's reason."""
    missing = [a for a in ARMS if not any(p.split(" ")[0] == a for p in present)]
    return [
        {
            "regime": regime,
            "method": m,
            "arm": a,
            "verdict": "n/a: " + reasons.get(a[2:], "not run"),
        }
        for m in methods
        for a in missing
    ]


def leaderboard(
    regimes: dict[str, Path], reference: Path | None = None, profiles: Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(board, confirmations)`` of the regimes ``{name: results.csv}`` (see the module
    docstring); the reasons for arms not run come from ``profiles/<regime>.yaml``."""
    import pandas as pd

    from sinreq.stats import holm

    paper = _paper_gains(reference)
    rows, idle, checks = [], [], []
    for regime, path in regimes.items():
        results = read_results(path)
        gap = gap_table(results)  # shared by the regime's rows and its confirmations' checks
        measured = regime_rows(regime, results, gap, paper)
        again = [rerun_gains(results, p) for p in sorted(path.parent.glob("rerun_*.csv"))]
        for r in measured:
            key = (r["method"], r["arm"])
            r["reruns"] = "; ".join(g.get(key, "not rerun") for g in again) or None
        confirmed = confirmations(regime, results, gap, path.parent)
        for r in measured if confirmed else []:
            mine = [c for c in confirmed if (c["method"], c["arm"]) == (r["method"], r["arm"])]
            r["confirmations"] = (
                "; ".join(f"{c['confirmation']}: {confirmation(c)}" for c in mine) or "not run"
            )
        checks += confirmed
        rows += measured
        methods = sorted({r["method"] for r in measured})
        idle += _not_run(
            regime,
            methods,
            {r["arm"] for r in measured},
            _reasons((profiles or Path()) / f"{regime}.yaml"),
        )
    board = pd.DataFrame(rows, columns=COLUMNS)
    board["p_holm"] = holm(board["p"].tolist(), ALPHA)[0] if len(board) else []
    board["verdict"] = [_verdict(r.gain, r.p_holm) for r in board.itertuples()]
    board = pd.concat([board, pd.DataFrame(idle, columns=COLUMNS)], ignore_index=True)
    return board, pd.DataFrame(checks, columns=CONFIRM_COLUMNS)


def _paper_gains(reference: Path | None) -> dict[str, float]:
    """``{method: the paper's mean SinReQ gain}`` from the reference file's claims."""
    if reference is None:
        return {}
    from sinreq.report.claims import load_reference, paper_values

    return {
        key: values["mean_gain_points"]
        for key, values in paper_values(load_reference(reference)).items()
        if "mean_gain_points" in values and " " not in key
    }


def _reasons(profile: Path) -> dict[str, str]:
    """``{regularizer: why the regime does not run it}``: the profile's ``not_applicable``."""
    data = yaml.safe_load(profile.read_text()) if profile.is_file() else None
    return (data or {}).get("not_applicable") or {}


def verdict_paragraph(
    board: pd.DataFrame, regime: str, confirmed: pd.DataFrame | None = None
) -> str:
    """One paragraph per regime, worded as strong as the Holm-corrected intervals allow, then
    its ``confirmed`` rows (:func:`confirmations`)."""
    rows = board[(board["regime"] == regime) & board["gain"].notna()]
    if rows.empty:
        return f"**{regime}**: nothing measured yet."
    parts = []
    for r in rows.itertuples():
        parts.append(
            f"{regularizer_name(r.arm)} on {name(r.method)}: "
            f"{_worded(r.verdict, r.ci_low, r.ci_high)}, "
            f"{fmt(r.gain, '+.2f')} points, 95 % CI {interval(r.ci_low, r.ci_high)} "
            f"(Holm p {fmt(r.p_holm, '.2g')})"
        )
    configs, seeds = int(rows["configs"].max()), int(rows["seeds"].max())
    n_gain = int((rows["verdict"] == "gain").sum())
    n_harm = int((rows["verdict"] == "harm").sum())
    head = (
        f"**{regime}** ({configs} configuration(s), {seeds} final seeds): "
        f"{n_gain} arm(s) with a detectable gain, {n_harm} with a detectable loss, "
        f"{len(rows) - n_gain - n_harm} with no detectable effect at Holm-corrected 5 %. "
    )
    tail = ""
    for label, conf in (
        confirmed[confirmed["regime"] == regime].groupby("confirmation", sort=False)
        if confirmed is not None
        else ()
    ):
        tail += (
            f" Confirmation `{label}` on fresh seeds {conf['final_seeds'].iloc[0]} (each lambda "
            "fixed to this choice; Holm over its own arms): "
            + "; ".join(
                f"{regularizer_name(c['arm'])}: {confirmation(c)}" for c in conf.to_dict("records")
            )
            + "."
        )
    return head + "; ".join(parts) + "." + tail


def _worded(verdict: str, low: float, high: float) -> str:
    """A verdict as the paragraph says it: an uncorrected interval that excludes zero is never
    written as a plain "no detectable effect"."""
    if verdict == "no detectable effect" and (low > 0 or high < 0):
        return "not detectable after Holm, although the uncorrected interval excludes zero"
    return {"gain": "a gain", "harm": "a loss"}.get(verdict, verdict)


def confirmation(c: Mapping[str, Any]) -> str:
    """One confirmation row (:data:`CONFIRM_COLUMNS`) in words:
    ``+1.20 [+0.40, +2.00], Holm p 0.01 (n=8): a gain``."""
    gain = c.get("gain", math.nan)
    if not (isinstance(gain, float) and math.isfinite(gain)):
        return c["verdict"]
    return (
        f"{fmt(gain, '+.2f')} {interval(c['ci_low'], c['ci_high'])}, "
        f"Holm p {fmt(c['p_holm'], '.2g')} (n={c['seeds']:.0f}): "
        + _worded(c["verdict"], c["ci_low"], c["ci_high"])
    )


def leaderboard_markdown(board: pd.DataFrame, confirmed: pd.DataFrame, command: str) -> str:
    """``leaderboard.md``: the verdicts per regime, then the table."""
    regimes = list(dict.fromkeys(board["regime"]))
    lines = [
        "# Benchmark leaderboard: weight regularizers against none, per regime",
        "",
        f"Generated by `{command}` from each regime's `results.csv`. Gain: the mean over the "
        "regime's configurations of the paired per-seed test-accuracy difference (arm - none, "
        "points); 95 % t interval over seeds; p of the one-sample t test over seeds, then "
        "Holm over every row of the benchmark. Gap: FP - none (points). Closure: 100 gain / "
        "gap with a seed-bootstrap 95 % interval. Lambdas: chosen on validation per "
        "configuration (never on test). Reruns: the same test on each committed rerun of the "
        "regime (`rerun_*.csv`: the same runs trained again, another thread count or day; not "
        "Holm-corrected; `not rerun`: the rerun has no final runs of that arm at the recorded "
        "lambda, because it chose another one or reran only some arms). Confirmations: the "
        "regime's profile run again on fresh seeds with some or all of its arms, each lambda "
        "fixed to the regime's choice (`<regime>/confirm*/results.csv`, also in "
        "`confirmations.csv`); each one's pooled test, Holm-corrected over its own arms (a "
        "family decided in advance).",
        "",
        "## Verdicts",
        "",
        *[verdict_paragraph(board, r, confirmed) + "\n" for r in regimes],
        "## Table",
        "",
        table(
            [
                {
                    "regime": r.regime,
                    "method": name(r.method),
                    "arm": regularizer_name(r.arm),
                    "gain (95 % CI)": f"{fmt(r.gain, '+.2f')} {interval(r.ci_low, r.ci_high)}"
                    if r.gain == r.gain
                    else "-",
                    "Holm p": fmt(r.p_holm, ".2g"),
                    "verdict": r.verdict,
                    "gap to FP": fmt(r.gap),
                    "closure % (95 % CI)": f"{fmt(r.closure, '.0f')} "
                    f"{interval(r.closure_ci_low, r.closure_ci_high, '.0f')}"
                    if r.gain == r.gain
                    else "-",
                    "lambda": r.lambdas if isinstance(r.lambdas, str) else "-",
                    "paper's gain": fmt(r.paper_gain, "+.1f"),
                    "seeds": fmt(r.seeds, ".0f"),
                    "reruns: gain (95 % CI)": r.reruns if isinstance(r.reruns, str) else "-",
                    "confirmations on fresh seeds": r.confirmations
                    if isinstance(r.confirmations, str)
                    else "-",
                }
                for r in board.itertuples()
            ],
            markdown=True,
        ),
        "",
    ]
    return "\n".join(lines)


def plot_forest(board: pd.DataFrame, confirmed: pd.DataFrame, path: Path) -> None:
    """The forest plot: per regime a panel, per arm its gain with the 95 % CI (hollow markers
    below: its confirmations on fresh seeds, where there are some), zero marked."""
    from sinreq.plotting import pyplot
    from sinreq.report.plots import palette

    plt = pyplot()
    measured = board[board["gain"].notna()]
    tested = confirmed[confirmed["gain"].notna()]
    regimes = list(dict.fromkeys(measured["regime"])) or ["(none)"]
    colours = palette([a.split(" ")[0] for a in measured["arm"]], first="q+sinreq")
    heights = [max(1, int((measured["regime"] == r).sum())) for r in regimes]
    fig, axes = plt.subplots(
        len(regimes), 1, figsize=(7.5, 1.2 + 0.45 * sum(heights)), squeeze=False,
        gridspec_kw={"height_ratios": heights}, sharex=True,
    )  # fmt: skip
    for ax, regime in zip(axes[:, 0], regimes, strict=True):
        rows = measured[measured["regime"] == regime].iloc[::-1]
        for y, r in enumerate(rows.itertuples()):
            colour = colours[r.arm.split(" ")[0]]
            ax.errorbar(
                r.gain, y, xerr=[[r.gain - r.ci_low], [r.ci_high - r.gain]], fmt="o",
                color=colour, capsize=3,
            )  # fmt: skip
            ax.annotate(
                f"Holm p {fmt(r.p_holm, '.2g')}", (1.01, y), xycoords=("axes fraction", "data"),
                fontsize=7, va="center",
            )  # fmt: skip
            mine = tested[
                (tested["regime"] == regime) & (tested["method"] == r.method)
                & (tested["arm"] == r.arm)
            ]  # fmt: skip
            for i, c in enumerate(mine.itertuples(), 1):  # fresh-seed confirmations, hollow
                at = y - 0.22 * i
                ax.errorbar(
                    c.gain, at, xerr=[[c.gain - c.ci_low], [c.ci_high - c.gain]], fmt="o",
                    mfc="white", color=colour, capsize=2, markersize=4,
                )  # fmt: skip
                ax.annotate(
                    f"{c.confirmation}: Holm p {fmt(c.p_holm, '.2g')}", (1.01, at),
                    xycoords=("axes fraction", "data"), fontsize=6, va="center", color="dimgrey",
                )  # fmt: skip
        labels = [f"{regularizer_name(r.arm)} ({name(r.method)})" for r in rows.itertuples()]
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.set_ylim(-0.8, len(rows) - 0.3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(f"regime {regime}", fontsize=9, loc="left")
    hollow = "\n(hollow: confirmations on fresh seeds, Holm over their own arms)"
    hollow = hollow if len(tested) else ""
    axes[-1, 0].set_xlabel(f"test-accuracy gain over no regularizer (points), 95 % CI{hollow}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def leaderboard_command(
    root: Path, out: Path, reference: Path | None, profiles: Path = Path("pipelines/benchmark")
) -> int:
    """``sinreq leaderboard ROOT``: every ``ROOT/<regime>/results.csv`` (the regime's profile:
    ``profiles/<regime>.yaml``); writes ``leaderboard.{csv,md,png}`` and ``confirmations.csv``
    into ``out`` and prints the verdicts."""
    found = {p.parent.name: p for p in sorted(root.glob("*/results.csv"))}
    order = [r for r in REGIMES if r in found] + [r for r in found if r not in REGIMES]
    regimes = {r: found[r] for r in order}
    if not regimes:
        raise ValueError(f"{root}: no <regime>/results.csv; run a benchmark profile first")
    board, confirmed = leaderboard(regimes, reference, profiles)
    out.mkdir(parents=True, exist_ok=True)
    board.to_csv(out / "leaderboard.csv", index=False)
    confirmed.to_csv(out / "confirmations.csv", index=False)
    ref = f" --reference {reference}" if reference else ""
    command = f"sinreq leaderboard {root} --out {out}{ref}"
    (out / "leaderboard.md").write_text(leaderboard_markdown(board, confirmed, command))
    plot_forest(board, confirmed, out / "leaderboard.png")
    for regime in regimes:
        print(verdict_paragraph(board, regime, confirmed))
    return 0
