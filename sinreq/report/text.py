"""Numbers and tables as text: the cells of ``summary.md`` and of the ``sinreq check`` table."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

METHOD_NAME = {"dorefa": "DoReFa", "wrpn": "WRPN"}


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
    """``dorefa w3`` or ``dorefa w3a4``."""
    import pandas as pd

    act = "" if pd.isna(row["act_bits"]) else f"a{row['act_bits']}"
    return f"{row['method']} w{row['bits']}{act}"


def table(headers: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    """Rows of strings as an aligned plain-text table, or as a Markdown table."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [str(c).ljust(w) for c, w in zip(cells, widths, strict=True)]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(headers), line(rule), *(line(r) for r in rows)])
