"""How every benchmark prints a figure: a human-readable line and one JSON line.

``{"benchmark", "metric", "value", "unit", "baseline", "target"}``, so figures can be
compared over time (``make bench | grep '^{'``).
"""

from __future__ import annotations

import json
from typing import Any


def figure(
    benchmark: str,
    metric: str,
    value: float,
    unit: str,
    *,
    baseline: float | None,
    target: Any = None,
    note: str = "",
) -> None:
    base = "-" if baseline is None else f"{baseline:.4g}"
    goal = "-" if target is None else str(target)
    print(f"{metric:<28} {value:>12.4g} {unit:<10} baseline {base:>10} target {goal} {note}")
    record = {
        "benchmark": benchmark,
        "metric": metric,
        "value": round(float(value), 6),
        "unit": unit,
        "baseline": None if baseline is None else round(float(baseline), 6),
        "target": target,
    }
    print(json.dumps(record), flush=True)
