"""``sinreq params``: a profile is checked whole, every problem named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sinreq.cli import main

ROOT = Path(__file__).resolve().parents[1]
PROFILES = [ROOT / "params.yaml", *sorted((ROOT / "pipelines").rglob("*.yaml"))]


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_committed_profiles_are_valid(path, tmp_path, capsys):
    stamp = tmp_path / "params.ok"
    assert main(["params", str(path), "--out", str(stamp)]) == 0
    assert stamp.read_text() == "valid\n"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_a_profile_keeps_a_collapsed_run_as_a_measured_row(path):
    """A collapse (WRPN W3A3 on the default's convnet on some seeds) must not stop `dvc repro`
    halfway: every profile's quantized recipe goes on (``on_collapse: continue``, recorded),
    and the report marks the run."""
    profile = yaml.safe_load(path.read_text())
    for net in profile["networks"]:
        assert net["quant"].get("on_collapse") == "continue", (path.name, net["model"])


def test_every_problem_is_named_in_one_line_and_nothing_is_written(tmp_path, capsys):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["regularizer"]["options"]["domian"] = "latent"  # a typo'd option
    params["regularizer"]["schedul"] = "warmup"  # a typo'd key
    params["networks"][0]["fp"]["lr"] = -1  # a bad value in a recipe
    params["networks"][1]["quant"]["regularizer"] = {"name": "kure"}  # a block in a recipe
    params["quant"]["bits"] = [3, 9]
    params["quant"]["name"] = ["dorefa", "xnor"]
    params["quant"]["overrides"] = "0=3,7=x"
    params["seeds"]["final"] = "a,b"
    params["networks"][0]["quant"]["amp"] = False  # DVC would write no flag: amp stays on
    params["extra_key"] = 1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    stamp = tmp_path / "params.ok"
    assert main(["params", str(bad), "--out", str(stamp)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("sinreq params: error: ")
    for named in (
        "unknown option 'domian'",
        "unknown option 'regularizer.schedul'",
        "networks.0: fp: lr: Input should be greater than 0 (got -1)",
        "networks.1: quant.regularizer: set it in the profile's regularizer block",
        "bits=9 is not supported",
        "unknown quantizer 'xnor'",
        "overrides '7=x': allowed PATTERN=BITS (BITS 2..8 or none)",
        "seeds.final: 'a,b': allowed: a comma-separated list of numbers >= 0",
        "quant.amp: false is dropped by DVC's flag unpacking; write 'false'",
        "unknown option 'extra_key'",
    ):
        assert named in err, named
    assert not stamp.exists()


def test_an_unreadable_profile_is_one_line(tmp_path, capsys):
    assert main(["params", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "missing.yaml" in err
