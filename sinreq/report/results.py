"""The results table: one row per run folder, read from its ``config.json`` / ``metrics.json``,
and the run files the weight histograms read back (``layers.json``, ``checkpoint.pt``).

Runs are grouped into *configurations* :data:`CONFIG_KEYS`. Within one, each run belongs to an
*arm* (column ``arm``): ``fp``, ``q`` (quantized, lambda 0) or ``q+<regularizer>`` (lambda > 0),
with the options that tell its settings apart when the results hold several settings of that
regularizer (``q+sinreq domain=latent``); a regularized arm's runs differ further by
:data:`SETTING_KEYS`. Lambda-tuning runs (``phase == "tune"``) and FP baselines superseded by
continued ones are read, but left out of the tables (:func:`reported_runs`).
"""

from __future__ import annotations

import json
import re
from numbers import Number
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from sinreq.quant import Grid

# The arm the paper's claims are about: its summary is filed under the method's name alone.
PRIMARY_ARM = "q+sinreq"
_STORED_COLUMNS: tuple[str, ...] = tuple(
    "run path model dataset profile method bits act_bits first_last width classes lambda "
    "regularizer domain schedule phase seed init_from epochs test_acc val_acc near_level_frac "
    "sin2 hard_round_test_acc wall_time_s images_per_s".split()
)
# ``arm``, ``options``, ``collapsed`` and ``layer_bits`` come last: results.csv files written
# before them lack them (a run without the collapse guard's record counts as not collapsed, one
# without ``layer_bits`` had uniform bits).
RESULT_COLUMNS: tuple[str, ...] = (*_STORED_COLUMNS, "arm", "options", "collapsed", "layer_bits")
_INT_COLUMNS = ("bits", "act_bits", "classes", "seed", "epochs")
# The measurements a run's metrics.json provides: the columns from test_acc on.
METRIC_COLUMNS = _STORED_COLUMNS[_STORED_COLUMNS.index("test_acc") :]
_FLOAT_COLUMNS = ("width", "lambda", *METRIC_COLUMNS)
# ``layer_bits``: a per-layer assignment (``quant.overrides``, PATTERN=BITS,...); empty: uniform
CONFIG_KEYS: tuple[str, ...] = tuple(
    "model dataset method bits act_bits first_last width layer_bits".split()
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


def _nested(config: dict[str, Any]) -> bool:
    """Whether ``config`` has the nested layout (``quant`` / ``regularizer`` blocks)."""
    return "quant" in config or isinstance(config.get("regularizer"), dict)


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """The run settings of ``config.json`` under the flat result names (``method``, ``bits``,
    ``lambda``, ``regularizer``, ``domain``, ``options``, ...), from either layout: nested
    (``quant: {name, bits, act_bits, first_last}``, ``regularizer: {name, lambda, schedule,
    options}``) or flat (the keys themselves; ``domain`` is then the only option, a missing
    regularizer is SinReQ, and FP runs never used theirs)."""
    if not _nested(config):
        fp = config.get("method") == "fp"
        return {
            **config,
            "lambda": 0.0 if fp else float(config.get("lambda") or 0.0),
            "regularizer": config.get("regularizer") or "sinreq",
            "options": {"domain": config.get("domain")},
            "exclude_first_last": config.get("reg_exclude_first_last"),
        }
    quant, reg = config.get("quant") or {"name": "fp"}, config.get("regularizer") or {}
    options = reg.get("options") or {}
    return {
        **config,
        **{k: quant.get(k) for k in ("bits", "act_bits", "first_last")},
        "method": quant.get("name"),
        "layer_bits": _layer_bits(quant.get("overrides") or {}),
        "lambda": float(reg.get("lambda", reg.get("lam")) or 0.0),
        "regularizer": reg.get("name"),
        "schedule": reg.get("schedule"),
        "domain": options.get("domain"),
        "options": options,
        "exclude_first_last": options.get("exclude_first_last"),
    }


def _layer_bits(overrides: dict[str, int | None]) -> str:
    """``quant.overrides`` as ``0=3,3=2,7=3`` in layer order (config.json sorts its keys as
    text; numeric layer names are sorted as numbers)."""
    order = sorted(overrides, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    return ",".join(f"{k}={overrides[k] if overrides[k] is not None else 'none'}" for k in order)


def render_options(options: dict[str, Any]) -> str:
    """``key=value`` pairs sorted by key, space-separated (values other than strings as compact
    JSON; unset ones left out): ``domain=normalized max_bits=7``."""
    return " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
        for k, v in sorted(options.items())
        if v is not None
    )


def _parse_options(text: Any) -> dict[str, str]:
    """The pairs of :func:`render_options` (empty for NaN / empty)."""
    return dict(re.findall(r"(\S+?)=(\S*)", text)) if isinstance(text, str) else {}


def _result_row(folder: Path) -> dict[str, Any]:
    """The result columns of one run folder (all but ``arm``, which needs every row)."""
    config = read_object(folder / "config.json")
    metrics = read_object(folder / "metrics.json")
    required = ("model", "dataset") if _nested(config) else ("model", "dataset", "method")
    for source, data, keys in (
        ("config.json", config, (*required, "seed")),
        ("metrics.json", metrics, ("test_acc",)),
    ):
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"{folder / source}: missing key {missing[0]!r}")
    config = _settings(config)
    if not config["method"]:
        raise ValueError(f"{folder / 'config.json'}: missing key 'quant.name'")
    quantized, regularized = config["method"] != "fp", config["lambda"] > 0
    return {
        "run": folder.name,
        "path": str(folder),
        **{k: config.get(k) for k in ("model", "dataset", "profile", "method", "classes")},
        "phase": config.get("phase"),
        **{k: config.get(k) if quantized else None for k in ("bits", "act_bits", "first_last")},
        "width": config.get("width", 1.0),
        "lambda": config["lambda"],
        **{
            k: config.get(k) if regularized else None for k in ("regularizer", "domain", "schedule")
        },
        "options": render_options(config["options"]) if regularized else "",
        "seed": config["seed"],
        "init_from": config.get("init_from"),
        "epochs": metrics.get("epochs", config.get("epochs")),
        **{k: metrics.get(k) for k in METRIC_COLUMNS},
        "collapsed": bool(metrics.get("collapsed", False)),
        "layer_bits": (config.get("layer_bits") or None) if quantized else None,
    }


def with_arms(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with the column ``arm``: ``fp`` / ``q`` (lambda 0; by method), else
    ``fp+<regularizer>`` / ``q+<regularizer>`` followed by the options (and schedule) whose values
    differ among that regularizer's runs; ``options`` is derived from ``domain`` when missing."""
    import pandas as pd

    df = results.copy()
    regularized = pd.to_numeric(df["lambda"], errors="coerce").fillna(0).gt(0).tolist()
    if "options" not in df:
        df["options"] = [
            f"domain={d}" if r and isinstance(d, str) else ""
            for r, d in zip(regularized, df["domain"], strict=True)
        ]
    names = [n if r else None for r, n in zip(regularized, df["regularizer"], strict=True)]
    settings = [
        {**_parse_options(o), "schedule": s if isinstance(s, str) else "none"}
        for o, s in zip(df["options"], df["schedule"], strict=True)
    ]
    varying: dict[str, list[str]] = {}
    for name in set(names) - {None}:
        group = [s for s, n in zip(settings, names, strict=True) if n == name]
        keys = sorted(set().union(*group))
        varying[name] = [k for k in keys if len({s.get(k, "none") for s in group}) > 1]
    df["arm"] = [
        ("fp" if method == "fp" else "q")
        + (f"+{name}" + "".join(f" {k}={s.get(k, 'none')}" for k in varying[name]) if name else "")
        for method, name, s in zip(df["method"], names, settings, strict=True)
    ]
    return df


def collect_results(runs: list[Path]) -> pd.DataFrame:
    """One row per run folder (see :func:`find_runs`) with the columns :data:`RESULT_COLUMNS`.

    For full-precision runs ``bits``/``act_bits``/``first_last`` are missing; for runs without a
    regularizer (``lambda == 0``) so are ``regularizer``/``domain``/``schedule``/``options``.
    """
    import pandas as pd

    rows = [_result_row(folder) for folder in find_runs(runs)]
    frame = pd.DataFrame(rows, columns=[c for c in RESULT_COLUMNS if c != "arm"])
    return with_arms(_typed(frame))[list(RESULT_COLUMNS)]


def read_results(path: Path) -> pd.DataFrame:
    """The ``results.csv`` written by ``sinreq report`` (one-line ValueError if unusable); the
    ``arm`` / ``options`` columns are derived when the file predates them."""
    import pandas as pd

    if not path.is_file():
        raise ValueError(f"results file {path} not found; run 'sinreq report' first")
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: unreadable CSV ({err})".splitlines()[0]) from None
    missing = [c for c in _STORED_COLUMNS if c not in df]
    if missing:
        raise ValueError(f"{path}: missing column {missing[0]!r}; regenerate it with sinreq report")
    df = _typed(df)
    if "collapsed" not in df:
        df["collapsed"] = False
    if "layer_bits" not in df:
        df["layer_bits"] = None
    return df if "arm" in df else with_arms(df)


def with_defaults(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with the optional grouping columns filled in (hand-made tables lack them),
    ``arm`` included."""
    df = results.copy()
    defaults = {"act_bits": None, "first_last": None, "width": 1.0, "regularizer": "sinreq"}
    unset = {"domain": None, "schedule": None, "phase": None, "layer_bits": None}
    for column, default in {**defaults, **unset}.items():
        if column not in df:
            df[column] = default
    return df if "arm" in df else with_arms(df)


def summary_key(method: str, arm: str) -> str:
    """Where the summary files ``method``'s ``arm``: the method's name for :data:`PRIMARY_ARM`
    (the paper's claims), else ``"<method> <arm>"``."""
    return method if arm == PRIMARY_ARM else f"{method} {arm}"


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
    """Layers of run ``folder`` that its regularizer acts on at ``bits`` (from layers.json and the
    first/last exclusion in config.json; layers at other bit widths, e.g. 8-bit first/last
    layers, have another grid and are left out)."""
    from sinreq.quant import edge_layers

    config = _settings(read_object(folder / "config.json"))
    rows = read_json(folder / "layers.json")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{folder / 'layers.json'}: expected a list of layer rows")
    weights = [r for r in rows if r.get("kind") != "QuantAct"]
    names = [r.get("layer") for r in weights]
    edges = edge_layers(names) if config.get("exclude_first_last") else set()
    return [
        r.get("layer")
        for r in weights
        if r.get("weight_bits") == bits and r.get("layer") not in edges
    ]


def layer_grid(folder: Path, layers: list[str], method: str, bits: int) -> Grid:
    """The latent weights of ``layers`` in run ``folder``'s checkpoint on their quantizer's
    :class:`~sinreq.quant.Grid` (normalized domain; the quantizer's own state, e.g. LSQ's step,
    read from the checkpoint), pooled into one grid: at one bit width the layers share their
    levels in grid units."""
    import dataclasses

    import torch

    from sinreq.checkpoint import load_model_state
    from sinreq.quant import QUANTIZERS

    if not layers:
        raise ValueError(f"{folder}: no regularized layer")
    file = folder / "checkpoint.pt"
    state = load_model_state(file)
    grids = []
    for name in layers:
        if f"{name}.weight" not in state:
            raise ValueError(f"{file}: no weight for layer {name!r}")
        quantizer, prefix = QUANTIZERS.get(method)(bits), f"{name}.weight_quant."
        try:
            quantizer.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )
        except RuntimeError as err:
            raise ValueError(f"{file}: layer {name!r}: {err}".splitlines()[0]) from None
        grids.append(quantizer.grid(state[f"{name}.weight"].float(), "normalized"))
    return dataclasses.replace(grids[0], x=torch.cat([g.x.detach().flatten() for g in grids]))
