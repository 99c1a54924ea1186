"""The results table: one row per run folder, read from its ``config.json`` / ``metrics.json``,
and the run files the weight histograms read back (``layers.json``, ``checkpoint.pt``).

Runs are grouped into *configurations* :data:`CONFIG_KEYS`; within one, SinReQ runs differ by
their setting :data:`SETTING_KEYS`. Lambda-tuning runs (``phase == "tune"``) and FP baselines
superseded by continued ones are read, but left out of the tables (:func:`reported_runs`).
"""

from __future__ import annotations

import json
from numbers import Number
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import torch

# Same names as sinreq.quant.METHODS; not imported from there to keep torch out of CLI start-up.
QUANT_METHODS: tuple[str, ...] = ("dorefa", "wrpn")
RESULT_COLUMNS: tuple[str, ...] = (
    "run",
    "path",
    "model",
    "dataset",
    "profile",
    "method",
    "bits",
    "act_bits",
    "first_last",
    "width",
    "classes",
    "lambda",
    "regularizer",
    "domain",
    "schedule",
    "phase",
    "seed",
    "init_from",
    "epochs",
    "test_acc",
    "val_acc",
    "near_level_frac",
    "sin2",
    "hard_round_test_acc",
    "wall_time_s",
    "images_per_s",
)
_INT_COLUMNS = ("bits", "act_bits", "classes", "seed", "epochs")
# The measurements a run's metrics.json provides: the columns from test_acc on.
METRIC_COLUMNS = RESULT_COLUMNS[RESULT_COLUMNS.index("test_acc") :]
_FLOAT_COLUMNS = ("width", "lambda", *METRIC_COLUMNS)
CONFIG_KEYS: tuple[str, ...] = (
    "model",
    "dataset",
    "method",
    "bits",
    "act_bits",
    "first_last",
    "width",
)
SETTING_KEYS: tuple[str, ...] = ("lambda", "domain", "schedule")


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``; a one-line ValueError naming the path if missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable JSON ({err})".splitlines()[0]) from None


def read_object(path: Path) -> dict[str, Any]:
    """:func:`read_json` of a file that must hold a JSON object."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders named by ``paths``: a folder holding ``config.json`` is a run, any other
    folder stands for every folder below it that holds one. Duplicates are dropped."""
    found: dict[Path, Path] = {}
    for path in paths:
        if not path.is_dir():
            raise ValueError(f"run folder {path} does not exist or is not a folder")
        if (path / "config.json").exists():
            found.setdefault(path.resolve(), path)
            continue
        children = sorted(c.parent for c in path.rglob("config.json"))
        if not children:
            raise ValueError(f"{path}: no config.json in it or in any of its subfolders")
        for child in children:
            found.setdefault(child.resolve(), child)
    return list(found.values())


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Integer columns as nullable ``Int64``, measurement columns as float."""
    import pandas as pd

    for column in _INT_COLUMNS:
        df[column] = pd.to_numeric(df[column]).astype("Int64")
    for column in _FLOAT_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df


def _result_row(folder: Path) -> dict[str, Any]:
    """The :data:`RESULT_COLUMNS` of one run folder."""
    config = read_object(folder / "config.json")
    metrics = read_object(folder / "metrics.json")
    for source, data, keys in (
        ("config.json", config, ("model", "dataset", "method", "seed")),
        ("metrics.json", metrics, ("test_acc",)),
    ):
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"{folder / source}: missing key {missing[0]!r}")
    quantized = config["method"] != "fp"
    lam = float(config.get("lambda") or 0.0) if quantized else 0.0
    return {
        "run": folder.name,
        "path": str(folder),
        **{k: config.get(k) for k in ("model", "dataset", "profile", "method", "classes")},
        "phase": config.get("phase"),
        "bits": config.get("bits") if quantized else None,
        "act_bits": config.get("act_bits") if quantized else None,
        "first_last": config.get("first_last") if quantized else None,
        "width": config.get("width", 1.0),
        "lambda": lam,
        **{k: config.get(k) if lam > 0 else None for k in ("regularizer", "domain", "schedule")},
        "seed": config["seed"],
        "init_from": config.get("init_from"),
        "epochs": metrics.get("epochs", config.get("epochs")),
        **{k: metrics.get(k) for k in METRIC_COLUMNS},
    }


def collect_results(runs: list[Path]) -> pd.DataFrame:
    """One row per run folder (see :func:`find_runs`) with the columns :data:`RESULT_COLUMNS`.

    For full-precision runs ``bits``/``act_bits``/``first_last`` are missing; for runs without a
    regularizer (``lambda == 0``) so are ``regularizer``/``domain``/``schedule``.
    """
    import pandas as pd

    rows = [_result_row(folder) for folder in find_runs(runs)]
    return _typed(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)))


def read_results(path: Path) -> pd.DataFrame:
    """The ``results.csv`` written by ``sinreq report`` (one-line ValueError if unusable)."""
    import pandas as pd

    if not path.is_file():
        raise ValueError(f"results file {path} not found; run 'sinreq report' first")
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: unreadable CSV ({err})".splitlines()[0]) from None
    missing = [c for c in RESULT_COLUMNS if c not in df]
    if missing:
        raise ValueError(f"{path}: missing column {missing[0]!r}; regenerate it with sinreq report")
    return _typed(df)


def with_defaults(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with the optional grouping columns filled in (hand-made tables lack them)."""
    df = results.copy()
    for column, default in (
        ("act_bits", None),
        ("first_last", None),
        ("width", 1.0),
        ("regularizer", "sinreq"),
        ("domain", None),
        ("schedule", None),
        ("phase", None),
    ):
        if column not in df:
            df[column] = default
    return df


def reported_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The runs the tables report: no lambda-tuning runs, and for a model whose FP baselines were
    continued for the fine-tune's epochs, the continued FP runs only (the fair reference)."""
    if "phase" not in results:
        return results
    df = results[results["phase"] != "tune"]
    fp = df["method"] == "fp"
    continued = set(df.loc[fp & (df["phase"] == "final"), "model"])
    return df[~(fp & df["model"].isin(continued) & (df["phase"] != "final"))]


def match(df: pd.DataFrame, values: dict[str, Any]) -> pd.Series:
    """Boolean mask of the rows of ``df`` whose columns equal ``values`` (missing matches NaN)."""
    import pandas as pd

    mask = pd.Series(True, index=df.index)
    for column, value in values.items():
        if pd.isna(value):
            mask &= df[column].isna()
        elif isinstance(value, Number) and not isinstance(value, bool):
            mask &= pd.to_numeric(df[column], errors="coerce") == value
        else:
            mask &= df[column].astype(object) == value
    return mask


def regularized_layers(folder: Path, bits: int) -> list[str]:
    """Layers of run ``folder`` that SinReQ regularizes at ``bits`` (from layers.json and the
    first/last exclusion in config.json; layers at other bit widths, e.g. 8-bit first/last
    layers, have another grid and are left out)."""
    from sinreq.quant import edge_layers

    config = read_object(folder / "config.json")
    rows = read_json(folder / "layers.json")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{folder / 'layers.json'}: expected a list of layer rows")
    weights = [r for r in rows if r.get("kind") != "QuantAct"]
    names = [r.get("layer") for r in weights]
    edges = edge_layers(names) if config.get("reg_exclude_first_last") else set()
    return [
        r.get("layer")
        for r in weights
        if r.get("weight_bits") == bits and r.get("layer") not in edges
    ]


def normalized_weights(folder: Path, layers: list[str], method: str) -> torch.Tensor:
    """The latent weights of ``layers`` in run ``folder``'s checkpoint, in the quantizer's
    coordinates (``weight_domain(w, method, "normalized")``), pooled into one flat tensor."""
    import torch

    from sinreq.checkpoint import load_model_state
    from sinreq.quant import weight_domain

    if not layers:
        raise ValueError(f"{folder}: no regularized layer")
    file = folder / "checkpoint.pt"
    state = load_model_state(file)
    missing = [name for name in layers if f"{name}.weight" not in state]
    if missing:
        raise ValueError(f"{file}: no weight for layer {missing[0]!r}")
    parts = [weight_domain(state[f"{n}.weight"].float(), method, "normalized") for n in layers]
    return torch.cat([p.flatten() for p in parts])
