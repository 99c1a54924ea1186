"""DVC's views of the study (issue 18, item 5): ``dvc plots show`` opens the report's PNGs
offline (image plots, no vega template fetched from the network), ``dvc metrics show`` / ``dvc
exp show`` compare experiments on the few keys of ``headline.json``, the same in every profile
with the same methods and regularizers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sinreq.report import HEADLINE_FIELDS, PLOT_FILES, TABLE_FILES, report_command

REPO = Path(__file__).resolve().parents[1]
REPORT = "${report_dir}"
SEEDS = (0, 1, 2)
FP = np.array([90.0, 90.4, 89.6])
Q = {"dorefa": np.array([86.0, 86.5, 85.5]), "wrpn": np.array([87.0, 87.2, 86.8])}
GAIN = {"dorefa": np.array([0.5, 0.7, 0.3]), "wrpn": np.array([-0.1, 0.2, -0.1])}


def stage(name: str) -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]


def paths(entries: list) -> dict[str, dict]:
    """``{path: options}`` of a dvc.yaml outs / metrics / plots list."""
    out = {}
    for entry in entries or []:
        if isinstance(entry, str):
            out[entry] = {}
        else:
            ((path, options),) = entry.items()
            out[path] = options or {}
    return out


def test_report_pngs_are_image_plots_not_outs():
    report = stage("report")
    plots = paths(report["plots"])
    assert set(plots) == {f"{REPORT}/{f}" for f in PLOT_FILES}
    assert all(p.endswith(".png") for p in plots)
    assert all(options == {"cache": False} for options in plots.values())  # no vega template
    outs = paths(report["outs"])
    assert not any(p.endswith(".png") for p in outs)
    assert {f"{REPORT}/{f}" for f in (*TABLE_FILES, "summary.json", "summary.md")} <= set(outs)


def test_headline_is_the_only_metric():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    metrics = {name: paths(s.get("metrics")) for name, s in stages.items() if s.get("metrics")}
    assert metrics == {"report": {f"{REPORT}/headline.json": {"cache": False}}}
    # The grid summaries stay outputs of their stages, uncached.
    for name in ("fp", "quant"):
        summaries = {p: o for p, o in paths(stages[name]["outs"]).items() if p.endswith(".json")}
        assert summaries and all(o == {"cache": False} for o in summaries.values())


def test_dvc_plots_folder_is_ignored():
    lines = (REPO / ".gitignore").read_text().splitlines()
    assert any(line.strip().strip("/") == "dvc_plots" for line in lines)


def write_run(root: Path, name: str, method: str, bits: int, seed: int, lam: float, acc: float):
    folder = root / name
    folder.mkdir(parents=True)
    config = {
        "model": "cifar10_convnet", "dataset": "digits", "width": 1.0, "seed": seed,
        "epochs": 2, "phase": "final", "init_from": None, "profile": "views",
        "quant": {"name": method, "bits": bits if method != "fp" else None, "act_bits": None,
                  "first_last": "8bit", "overrides": {}},
        "regularizer": {"name": "sinreq", "lambda": lam, "schedule": "warmup",
                        "warmup_epochs": 1.0, "options": {}},
    }  # fmt: skip
    metrics = {"test_acc": acc, "val_acc": acc}
    if method != "fp":
        metrics.update(near_level_frac=0.3, sin2=0.4, epochs=2)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "layers.json").write_text("[]")


def write_profile(root: Path, bits: tuple[int, ...]) -> Path:
    for i, seed in enumerate(SEEDS):
        write_run(root, f"fp-s{seed}", "fp", 32, seed, 0.0, float(FP[i]))
        for method in Q:
            for b in bits:
                q = float(Q[method][i]) + (b - 3)
                write_run(root, f"{method}-w{b}-q-s{seed}", method, b, seed, 0.0, q)
                gained = q + float(GAIN[method][i])
                write_run(root, f"{method}-w{b}-sinreq-s{seed}", method, b, seed, 0.1, gained)
    return root


def run_report(tmp_path: Path, name: str, bits: tuple[int, ...]) -> dict:
    runs = write_profile(tmp_path / f"runs-{name}", bits)
    out = tmp_path / f"report-{name}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        report_command([runs], out, f"sqlite:///{tmp_path / 'mlflow.db'}", "views")
    return json.loads((out / "headline.json").read_text())


@pytest.fixture(scope="module")
def headlines(tmp_path_factory) -> tuple[dict, dict, Path]:
    tmp = tmp_path_factory.mktemp("views")
    return run_report(tmp, "small", (3,)), run_report(tmp, "large", (3, 4)), tmp


def test_headline_keys_are_the_documented_set_in_every_profile(headlines):
    small, large, _ = headlines
    expected = {f"{m}.q+sinreq.{f}" for m in ("dorefa", "wrpn") for f in HEADLINE_FIELDS}
    expected |= {"fp.acc_mean", "runs"}
    assert set(small) == expected
    assert set(large) == expected  # another grid, the same columns in dvc exp show
    assert all(not isinstance(v, dict) for v in small.values())  # flat


def test_headline_numbers(headlines):
    small, large, _ = headlines
    assert small["runs"] == 3 + 2 * 2 * 3 and large["runs"] == 3 + 2 * 2 * 2 * 3
    assert small["fp.acc_mean"] == pytest.approx(FP.mean())
    gains = GAIN["dorefa"]
    half = 4.302652729911275 * gains.std(ddof=1) / np.sqrt(3)  # t_{0.975, 2}
    assert small["dorefa.q+sinreq.gain"] == pytest.approx(gains.mean())
    assert small["dorefa.q+sinreq.gain_ci_low"] == pytest.approx(gains.mean() - half)
    assert small["dorefa.q+sinreq.gain_ci_high"] == pytest.approx(gains.mean() + half)
    gap = FP.mean() - Q["dorefa"].mean()
    assert small["dorefa.q+sinreq.closure_pct"] == pytest.approx(100 * gains.mean() / gap)
    verdicts = [small[f"wrpn.q+sinreq.n_{v}"] for v in ("gain", "harm", "no_difference")]
    assert sum(verdicts) == 1  # one configuration, one Holm-corrected verdict


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_dvc_metrics_show_is_a_few_columns(headlines, tmp_path):
    """``dvc metrics show`` in a scratch repository with this dvc.yaml and a report's
    headline.json: one row, the headline's columns only."""
    pytest.importorskip("dvc")
    small, _, _ = headlines
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    report_dir = tmp_path / yaml.safe_load((REPO / "params.yaml").read_text())["report_dir"]
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "headline.json").write_text(json.dumps(small))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "-q"], cwd=tmp_path, check=True)
    shown = subprocess.run(
        [*dvc, "metrics", "show", "--json"], cwd=tmp_path, check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    data = json.loads(shown.stdout)
    ((_, files),) = ((k, v) for k, v in data.items())
    ((path, content),) = files["data"].items()
    assert path.endswith("headline.json")
    assert content["data"] == small
