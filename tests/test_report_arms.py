"""Tests of the report with several regularizer arms and a new quantizer: arms q, q+sinreq,
q+msqe, q+kure for the methods dorefa and lsq (bits 3 and 4) over 5 seeds, in the nested
config.json layout.

Every expected number is computed here from the constants below with numpy / scipy (or by
hand), never read back from the code under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from sinreq import models
from sinreq.quant import layer_table, quantize_model
from sinreq.report import (
    check_command,
    collect_results,
    gap_table,
    lambda_selection,
    mechanism_table,
    method_statistics,
    read_results,
    report_command,
    summary,
)
from sinreq.report.plots import plot_acc_vs_bits, plot_gap_closure, plot_mechanism
from sinreq.report.results import _result_row, layer_grid, regularized_layers
from sinreq.report.tables import acc_vs_bits

REPO = Path(__file__).resolve().parents[1]
MODEL = "cifar10_convnet"
SEEDS = (0, 1, 2, 3, 4)
METHODS = ("dorefa", "lsq")
BITS = (3, 4)
ARMS = ("sinreq", "msqe", "kure")
FP = np.array([90.0, 90.5, 89.5, 91.0, 89.0])  # mean 90
OFFSET = np.array([0.0, 1.0, -1.0, 0.5, -0.5])  # Q's per-seed offset, mean 0
BASE = {"dorefa": 80.0, "lsq": 84.0}  # Q at 3 bits; one point more at 4 bits
GAINS = {  # per method and regularizer, the per-seed gain over Q at 3 bits
    ("dorefa", "sinreq"): np.array([2.0, 2.2, 1.8, 2.1, 1.9]),  # mean 2.0, consistent
    ("dorefa", "msqe"): np.array([-1.0, 1.0, -0.5, 0.5, 0.0]),  # mean 0.0, noise
    ("dorefa", "kure"): np.array([0.5, 0.6, 0.4, 0.55, 0.45]),  # mean 0.5, consistent
    ("lsq", "sinreq"): np.array([1.0, 1.3, 0.8, 1.1, 0.9]),  # mean 1.02
    ("lsq", "msqe"): np.array([-2.0, -2.2, -1.9, -2.1, -1.8]),  # mean -2.0: harm
    ("lsq", "kure"): np.array([0.3, -0.2, 0.4, 0.1, -0.1]),  # mean 0.1, noise
}
BITS4_SHIFT = np.array([0.0, 0.1, 0.0, -0.1, 0.05])  # extra gain at 4 bits (p values differ)
FINAL_LAMBDA = {"sinreq": 0.1, "msqe": 0.5, "kure": 1.0}
NEAR = {"q": 0.3, "sinreq": 0.9, "msqe": 0.6, "kure": 0.4}  # near_level_frac per arm


def q_acc(method: str, bits: int) -> np.ndarray:
    return BASE[method] + (bits - 3) + OFFSET


def arm_acc(method: str, bits: int, reg: str) -> np.ndarray:
    return q_acc(method, bits) + GAINS[method, reg] + (BITS4_SHIFT if bits == 4 else 0.0)


def write_run(
    root: Path,
    name: str,
    *,
    method: str,
    seed: int,
    test_acc: float,
    bits: int = 3,
    reg: str = "sinreq",
    lam: float = 0.0,
    options: dict | None = None,
    phase: str = "final",
    val_acc: float | None = None,
    model_state: tuple[dict, list] | None = None,
) -> Path:
    """A run folder with the nested config.json layout."""
    folder = root / name
    folder.mkdir(parents=True)
    config = {
        "model": MODEL, "dataset": "digits", "width": 1.0, "seed": seed, "epochs": 2,
        "phase": phase, "init_from": None, "profile": "arms",
        "quant": {"name": method, "bits": bits, "act_bits": None, "first_last": "8bit",
                  "overrides": {}},
        "regularizer": {"name": reg, "lambda": lam, "schedule": "warmup", "warmup_epochs": 1.0,
                        "options": options if options is not None else {}},
    }  # fmt: skip
    metrics = {"test_acc": test_acc, "val_acc": test_acc if val_acc is None else val_acc}
    if method != "fp":
        near = NEAR[reg if lam > 0 else "q"]
        metrics.update(near_level_frac=near, sin2=0.5 - near / 2, epochs=2)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    state, layers = model_state or ({}, [])
    (folder / "layers.json").write_text(json.dumps(layers))
    if model_state is not None:
        torch.save({"model": state, "epoch": 2}, folder / "checkpoint.pt")
    return folder


def quantized_state(method: str, bits: int, seed: int) -> tuple[dict, list]:
    torch.manual_seed(seed)
    model = quantize_model(models.build(MODEL), method, bits)
    return model.state_dict(), layer_table(model)


REG_OPTIONS = {
    "sinreq": {"domain": "normalized", "exclude_first_last": False, "max_bits": 7},
    "msqe": {"domain": "normalized", "max_bits": 7},
    "kure": {},
}


def write_study(root: Path) -> Path:
    """FP x 5 seeds; per method and bits: Q and the three arms x 5 seeds (checkpoints for the
    seed-0, 3-bit runs, which the weight histograms show); lambda tuning of dorefa w3."""
    for i, seed in enumerate(SEEDS):
        write_run(root, f"fp-s{seed}", method="fp", seed=seed, test_acc=float(FP[i]))
    for method in METHODS:
        for bits in BITS:
            for i, seed in enumerate(SEEDS):
                state = quantized_state(method, bits, seed) if (seed, bits) == (0, 3) else None
                common = {"method": method, "bits": bits, "seed": seed, "model_state": state}
                tag = f"{method}-w{bits}"
                write_run(root, f"{tag}-q-s{seed}", test_acc=float(q_acc(method, bits)[i]),
                          **common)  # fmt: skip
                for reg in ARMS:
                    acc = float(arm_acc(method, bits, reg)[i])
                    write_run(root, f"{tag}-{reg}-s{seed}", reg=reg, lam=FINAL_LAMBDA[reg],
                              options=REG_OPTIONS[reg], test_acc=acc, **common)  # fmt: skip
    # Tuning (seeds 10, 11) of dorefa w3: SinReQ is best at 0.1, KURE at 1 (on validation).
    tuning = {("sinreq", 0.1): 75.0, ("sinreq", 1.0): 72.0, ("kure", 0.1): 71.0,
              ("kure", 1.0): 74.0, ("q", 0.0): 73.0}  # fmt: skip
    for seed in (10, 11):
        for (reg, lam), val in tuning.items():
            write_run(root, f"tune-{reg}-{lam}-s{seed}", method="dorefa", seed=seed, lam=lam,
                      reg="sinreq" if reg == "q" else reg, options=REG_OPTIONS.get(reg, {}),
                      phase="tune", test_acc=50.0, val_acc=val + seed - 10.5)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return write_study(tmp_path_factory.mktemp("arms"))


@pytest.fixture(scope="module")
def results(study) -> pd.DataFrame:
    return collect_results([study])


@pytest.fixture(scope="module")
def gap(results) -> pd.DataFrame:
    return gap_table(results)


def holm_by_hand(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: sorted p_(i) times (m - i), running max, capped at 1."""
    order = np.argsort(p)
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


# ---------------------------------------------------------------------------------------------


def test_arms_are_labelled_per_run(results):
    arms = results.set_index("run")["arm"]
    assert arms["fp-s0"] == "fp" and arms["dorefa-w3-q-s0"] == "q"
    assert arms["lsq-w4-sinreq-s2"] == "q+sinreq" and arms["dorefa-w3-msqe-s1"] == "q+msqe"
    assert arms["lsq-w3-kure-s4"] == "q+kure"
    assert set(arms) == {"fp", "q", "q+sinreq", "q+msqe", "q+kure"}
    row = results.set_index("run").loc["lsq-w4-sinreq-s2"]
    assert (row["method"], row["bits"], row["lambda"], row["regularizer"]) == (
        "lsq",
        4,
        0.1,
        "sinreq",
    )
    assert row["domain"] == "normalized" and row["schedule"] == "warmup"
    assert row["options"] == "domain=normalized exclude_first_last=false max_bits=7"
    kure = results.set_index("run").loc["lsq-w3-kure-s4"]
    assert pd.isna(kure["domain"]) and kure["options"] == ""  # KURE has no options


def test_each_arm_is_compared_with_q_alone(gap):
    # 2 methods x 2 bits x 3 arms: one comparison each, never an average over arms.
    assert len(gap) == 12 and set(gap["arm"]) == {"q+sinreq", "q+msqe", "q+kure"}
    for method in METHODS:
        for bits in BITS:
            q = q_acc(method, bits)
            for reg in ARMS:
                row = gap[(gap["method"] == method) & (gap["bits"] == bits)
                          & (gap["arm"] == f"q+{reg}")]  # fmt: skip
                assert len(row) == 1
                row = row.iloc[0]
                acc = arm_acc(method, bits, reg)
                assert row["qs_n"] == 5 and row["q_n"] == 5 and row["n_paired"] == 5
                assert row["qs_mean"] == pytest.approx(acc.mean())
                assert row["qs_std"] == pytest.approx(acc.std(ddof=1))
                assert row["q_mean"] == pytest.approx(q.mean())
                assert row["fp_mean"] == pytest.approx(90.0)
                assert row["gain"] == pytest.approx((acc - q).mean())
                assert row["closure_pct"] == pytest.approx(100 * (acc - q).mean() / (90 - q.mean()))
                assert row["p_value"] == pytest.approx(stats.ttest_rel(acc, q).pvalue)
                assert row["lambda"] == FINAL_LAMBDA[reg]
    # MSQE is not averaged into SinReQ: dorefa w3's SinReQ mean is Q + 2.0 exactly.
    sinreq = gap[(gap["method"] == "dorefa") & (gap["bits"] == 3) & (gap["arm"] == "q+sinreq")]
    assert sinreq["qs_mean"].item() == pytest.approx(80.0 + 2.0)


def test_holm_counts_every_comparison(gap):
    p = np.array([stats.ttest_rel(arm_acc(m, b, r), q_acc(m, b)).pvalue
                  for m in METHODS for b in BITS for r in ARMS])  # fmt: skip
    expected = holm_by_hand(p)
    got = [
        gap[(gap["method"] == m) & (gap["bits"] == b) & (gap["arm"] == f"q+{r}")]["p_holm"].item()
        for m in METHODS
        for b in BITS
        for r in ARMS
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    # The smallest p is multiplied by all 12 comparisons, not by the 4 of its arm.
    assert min(got) == pytest.approx(min(1.0, 12 * p.min()))
    verdict = dict(zip(gap["method"] + " " + gap["arm"] + " w" + gap["bits"].astype(str),
                       gap["verdict"], strict=True))  # fmt: skip
    assert verdict["dorefa q+sinreq w3"] == "gain" and verdict["lsq q+msqe w3"] == "harm"
    assert verdict["dorefa q+msqe w3"] == "no difference"


def test_summary_and_pooled_test_per_method_and_arm(results, gap):
    numbers = summary(gap)
    assert set(numbers) == {
        "dorefa", "dorefa q+msqe", "dorefa q+kure", "lsq", "lsq q+msqe", "lsq q+kure",
    }  # fmt: skip
    extra = method_statistics(results, gap)
    for method in METHODS:
        for reg in ARMS:
            key = method if reg == "sinreq" else f"{method} q+{reg}"
            gains = [(arm_acc(method, b, reg) - q_acc(method, b)).mean() for b in BITS]
            gaps = [90.0 - q_acc(method, b).mean() for b in BITS]
            assert numbers[key]["n_configs"] == 2
            assert numbers[key]["mean_gain_points"] == pytest.approx(np.mean(gains))
            assert numbers[key]["closure_ratio_of_means"] == pytest.approx(
                100 * np.mean(gains) / np.mean(gaps)
            )
            assert numbers[key]["closure_mean_of_ratios"] == pytest.approx(
                np.mean(100 * np.array(gains) / np.array(gaps))
            )
            # Pooled: per seed, the mean gain over the two bit widths, one-sample t test.
            per_seed = np.mean([arm_acc(method, b, reg) - q_acc(method, b) for b in BITS], axis=0)
            assert extra[key]["pooled_gain"] == pytest.approx(per_seed.mean())
            assert extra[key]["pooled_p"] == pytest.approx(stats.ttest_1samp(per_seed, 0).pvalue)
            assert extra[key]["pooled_n_seeds"] == 5


def test_lambda_selection_per_regularizer(results):
    table = lambda_selection(results)
    sinreq = table[table["arm"] == "q+sinreq"].set_index("lambda")
    kure = table[table["arm"] == "q+kure"].set_index("lambda")
    assert list(sinreq.index) == [0.0, 0.1, 1.0] and list(kure.index) == [0.0, 0.1, 1.0]
    assert sinreq["chosen"].tolist() == [False, True, False]
    assert kure["chosen"].tolist() == [False, False, True]
    assert sinreq.loc[0.1, "val_acc_mean"] == pytest.approx(75.0)
    assert kure.loc[0.0, "val_acc_mean"] == pytest.approx(73.0)  # lambda 0 shown with each arm
    assert (sinreq["final_lambda"] == 0.1).all() and (kure["final_lambda"] == 1.0).all()
    assert (table["tune_seeds"] == 2).all()


def test_mechanism_per_arm(results):
    mech = mechanism_table(results)
    rows = mech[(mech["method"] == "lsq") & (mech["bits"] == 3)].set_index("arm")
    assert sorted(rows.index) == ["q", "q+kure", "q+msqe", "q+sinreq"]
    for arm, near in (("q", 0.3), ("q+sinreq", 0.9), ("q+msqe", 0.6), ("q+kure", 0.4)):
        assert rows.loc[arm, "near_level_frac"] == pytest.approx(near)
        assert rows.loc[arm, "n"] == 5


def test_acc_vs_bits_has_every_arm(results, gap):
    curves = acc_vs_bits(results, gap)
    variants = set(curves["variant"])
    assert variants == {"fp", "q", "q+sinreq", "q+msqe", "q+kure"}
    row = curves[
        (curves["method"] == "lsq") & (curves["bits"] == 4) & (curves["variant"] == "q+kure")
    ]
    assert row["acc_mean"].item() == pytest.approx(arm_acc("lsq", 4, "kure").mean())


def test_plots_render_with_a_new_method_and_four_arms(results, gap, tmp_path):
    curves = acc_vs_bits(results, gap)
    plot_acc_vs_bits(results, curves, tmp_path / "a.png")
    plot_gap_closure(gap, {"dorefa": {"closure_mean_of_ratios": 30.0}}, tmp_path / "g.png")
    plot_mechanism(mechanism_table(results), tmp_path / "m.png")
    for name in ("a.png", "g.png", "m.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_lsq_weights_on_their_grid(study):
    # LSQ's grid is w / s on the integers [-4, 3] at 3 bits, s the layer's learned step.
    folder = study / "lsq-w3-sinreq-s0"
    layers = regularized_layers(folder, 3)
    assert layers  # the 3-bit layers (first and last are at 8 bits)
    state = torch.load(folder / "checkpoint.pt", weights_only=True)["model"]
    grid = layer_grid(folder, layers, "lsq", 3)
    expected = torch.cat(
        [(state[f"{n}.weight"] / state[f"{n}.weight_quant.step"]).flatten() for n in layers]
    )
    torch.testing.assert_close(grid.x, expected)
    assert (grid.step, grid.low, grid.high) == (1.0, -4.0, 3.0)
    with pytest.raises(ValueError, match="unknown quantizer 'nope'"):
        layer_grid(folder, layers, "nope", 3)


def test_report_command_with_arms(study, tmp_path):
    out = tmp_path / "report"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        reference = REPO / "reports" / "paper_reference.yaml"
        uri = f"sqlite:///{tmp_path / 'm.db'}"
        report_command([study], out, tracking_uri=uri, experiment="arms", reference=reference)
    numbers = json.loads((out / "summary.json").read_text())
    assert numbers["lsq q+kure"]["n_configs"] == 2 and numbers["runs"] == 5 + 80 + 10
    for name in ("acc_vs_bits.png", "gap_closure.png", "weight_hist.png", "mechanism.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    text = (out / "summary.md").read_text()
    assert "- DoReFa: SinReQ **helps**" in text
    assert "- LSQ q+msqe: MSQE **hurts**" in text
    # results.csv keeps its columns, arm and options appended; read back unchanged.
    written = pd.read_csv(out / "results.csv")
    assert list(written.columns[-4:]) == ["arm", "options", "collapsed", "layer_bits"]
    assert read_results(out / "results.csv")["arm"].tolist() == written["arm"].tolist()

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    run = mlflow.search_runs(experiment_names=["arms"]).iloc[0]
    assert run["metrics.lsq q_kure.n_configs"] == 2 and run["metrics.dorefa.n_configs"] == 2


def test_check_judges_a_claim_about_another_arm(study, tmp_path, capsys):
    import yaml

    results = collect_results([study])
    results.to_csv(tmp_path / "results.csv", index=False)
    kure_gain = np.mean([(arm_acc("lsq", b, "kure") - q_acc("lsq", b)).mean() for b in BITS])
    claims = [
        {"id": "kure", "kind": "regression", "description": "LSQ + KURE gain", "source": "test",
         "metric": "mean_gain_points", "method": "lsq", "arm": "q+kure",
         "expected": float(kure_gain), "tolerance": 1e-6},
        {"id": "sinreq", "kind": "regression", "description": "LSQ + SinReQ gain",
         "source": "test", "metric": "mean_gain_points", "method": "lsq",
         "expected": float(np.mean([(arm_acc("lsq", b, "sinreq") - q_acc("lsq", b)).mean()
                                    for b in BITS])), "tolerance": 1e-6},
        {"id": "absent", "kind": "regression", "description": "no such arm", "source": "test",
         "metric": "mean_gain_points", "method": "lsq", "arm": "q+binreg", "expected": 1.0,
         "tolerance": 0.1},
    ]  # fmt: skip
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump({"claims": claims}))
    assert check_command(tmp_path / "results.csv", tmp_path / "ref.yaml") == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    assert "PASS" in lines["kure"] and "PASS" in lines["sinreq"]
    assert "NOT MEASURED" in lines["absent"]


# ---------------------------------------------------------------------------------------------
# arms from options; config layouts; older results files


def test_options_that_differ_name_the_arm(tmp_path):
    # Two SinReQ domains and one KURE setting: SinReQ's arms carry the domain, KURE's does not.
    for seed in SEEDS[:2]:
        write_run(tmp_path, f"q-{seed}", method="dorefa", seed=seed, test_acc=80.0)
        for domain in ("latent", "normalized"):
            write_run(tmp_path, f"s-{domain}-{seed}", method="dorefa", seed=seed, lam=0.1,
                      options={"domain": domain, "max_bits": 7}, test_acc=81.0)  # fmt: skip
        write_run(tmp_path, f"k-{seed}", method="dorefa", seed=seed, lam=1.0, reg="kure",
                  test_acc=80.5)  # fmt: skip
    results = collect_results([tmp_path])
    assert set(results["arm"]) == {
        "q", "q+sinreq domain=latent", "q+sinreq domain=normalized", "q+kure",
    }  # fmt: skip
    gap = gap_table(results)
    assert len(gap) == 3 and (gap["qs_n"] == 2).all()
    assert set(summary(gap)) == {
        "dorefa q+kure", "dorefa q+sinreq domain=latent", "dorefa q+sinreq domain=normalized",
    }  # fmt: skip


def test_flat_and_nested_configs_give_the_same_row(tmp_path):
    nested = write_run(tmp_path, "nested", method="wrpn", seed=3, bits=4, lam=0.5,
                       options={"domain": "latent"}, test_acc=88.0)  # fmt: skip
    flat = tmp_path / "flat"
    shutil.copytree(nested, flat)
    config = {"model": MODEL, "dataset": "digits", "width": 1.0, "seed": 3, "epochs": 2,
              "phase": "final", "init_from": None, "profile": "arms", "method": "wrpn",
              "bits": 4, "act_bits": None, "first_last": "8bit", "lambda": 0.5,
              "regularizer": "sinreq", "domain": "latent", "schedule": "warmup"}  # fmt: skip
    (flat / "config.json").write_text(json.dumps(config))
    a, b = _result_row(nested), _result_row(flat)
    assert {k: v for k, v in a.items() if k not in ("run", "path")} == {
        k: v for k, v in b.items() if k not in ("run", "path")
    }
    assert a["options"] == "domain=latent" and a["method"] == "wrpn" and a["bits"] == 4
    fp = write_run(tmp_path, "fp", method="fp", seed=0, test_acc=90.0)
    row = _result_row(fp)
    assert row["method"] == "fp" and row["bits"] is None and row["lambda"] == 0.0
    assert row["regularizer"] is None and row["options"] == ""
    config = json.loads((fp / "config.json").read_text())
    (fp / "config.json").write_text(json.dumps({**config, "quant": None, "regularizer": None}))
    assert _result_row(fp) == row  # no quant block: full precision


def test_older_results_file_gets_its_arms():
    # reports/fashion/results.csv predates the arm and options columns.
    results = read_results(REPO / "reports" / "fashion" / "results.csv")
    expected = np.where(
        results["method"] == "fp", "fp", np.where(results["lambda"] > 0, "q+sinreq", "q")
    )
    assert results["arm"].tolist() == expected.tolist()
