"""How every benchmark prints a figure: a human-readable line and one JSON line.

``{"benchmark", "metric", "value", "unit", "baseline", "target", "load"}``, so figures can be
compared over time (``make bench | grep '^{'``). ``load`` is the machine's 1-minute load
average when the figure was printed: on a shared machine a figure means little without it.

Figures are medians of several rounds that alternate the measured code with its baseline
(``spread`` prints the range of those rounds), so noise from other processes shows as a wide
range instead of hiding in one lucky or unlucky run.

Every script takes its sizes from :func:`sized`: ``make test`` runs each one with
``BLISSNG_BENCH_SMOKE=1`` (tests/test_benchmarks.py), tiny sizes and one round, so that no
script rots between two ``make bench``.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

SMOKE = "BLISSNG_BENCH_SMOKE"
"""Set (to anything but ``0``): run every code path once, at tiny sizes; figures mean nothing."""


def smoke() -> bool:
    return os.environ.get(SMOKE, "") not in ("", "0")


def sized(full: T, tiny: T) -> T:
    """``full`` for a measurement, ``tiny`` for the smoke test (:data:`SMOKE` set)."""
    return tiny if smoke() else full


def load() -> float:
    """The 1-minute load average (the machine has 2 cores; above 2 others compete)."""
    return os.getloadavg()[0]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float], fmt: str = ".3g") -> str:
    """``"median of N rounds, min..max"``: how stable a figure was."""
    return f"median of {len(values)} rounds, {min(values):{fmt}}..{max(values):{fmt}}"


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
    now = load()
    base = "-" if baseline is None else f"{baseline:.4g}"
    goal = "-" if target is None else str(target)
    print(
        f"{metric:<28} {value:>12.4g} {unit:<10} baseline {base:>10} target {goal} "
        f"[load {now:.1f}] {note}".rstrip()
    )
    record = {
        "benchmark": benchmark,
        "metric": metric,
        "value": round(float(value), 6),
        "unit": unit,
        "baseline": None if baseline is None else round(float(baseline), 6),
        "target": target,
        "load": round(now, 2),
    }
    print(json.dumps(record), flush=True)
