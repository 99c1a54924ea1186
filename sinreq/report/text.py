"""Numbers and tables as text: the cells of ``summary.md`` and of the ``sinreq check`` table."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# How quantizers and regularizers are written in text; any other name is written as it is.
NAMES = {"dorefa": "DoReFa", "wrpn": "WRPN", "lsq": "LSQ", "sinreq": "SinReQ", "msqe": "MSQE",
         "kure": "KURE", "binreg": "BinReg", "dampen": "Dampen"}  # fmt: skip


def name(key: str) -> str:
    """The display name of a quantizer or regularizer: ``DoReFa``; unknown ones unchanged."""
    return NAMES.get(key, key)


def regularizer_name(arm: str) -> str:
    """``arm``'s regularizer for text: ``q+sinreq domain=latent`` -> ``SinReQ (domain=latent)``."""
    head, _, options = arm.partition(" ")
    return name(head.partition("+")[2] or head) + (f" ({options})" if options else "")


def fmt(value: Any, spec: str = ".2f", missing: str = "-") -> str:
    """``format(value, spec)``, or ``missing`` for None / NaN / inf."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def mean_std(mean: float, std: float, n: int) -> str:
    """``mean ± std (n=..)`` or ``-`` when not measured."""
    if not n:
        return "-"
    return f"{mean:.2f} ± {std:.2f} (n={n})" if math.isfinite(std) else f"{mean:.2f} (n={n})"


def interval(low: float, high: float, spec: str = "+.2f") -> str:
    """``[low, high]``."""
    return f"[{fmt(low, spec)}, {fmt(high, spec)}]"


def config_label(row: pd.Series) -> str:
    """``dorefa w3``, ``dorefa w3a4``, or with a per-layer assignment ``wrpn w2 [0=3,3=2]``."""
    import pandas as pd

    # int(): a column with a NaN (weights-only rows) holds floats, and "a3.0" is no label
    act = "" if pd.isna(row["act_bits"]) else f"a{int(row['act_bits'])}"
    layers = row.get("layer_bits")
    mixed = f" [{layers}]" if isinstance(layers, str) and layers else ""
    return f"{row['method']} w{int(row['bits'])}{act}{mixed}"


def table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """Rows (``{header: cell}``, the same headers in each) as an aligned plain-text table, or as a
    Markdown table."""
    headers, rows = list(rows[0]), [list(r.values()) for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [str(c).ljust(w) for c, w in zip(cells, widths, strict=True)]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(headers), line(rule), *(line(r) for r in rows)])
