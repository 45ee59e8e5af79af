"""The scan commands' arguments, checked before anything moves: each refusal is a
:class:`ScanArgumentError` naming the command and the argument (shared by the step scans of
``_commands`` and the continuous scans of ``_continuous``), and the keywords every step scan
accepts (their meanings: ``_commands``' docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from blissng.errors import BlissngError

from ._context import current_context
from ._counter_selection import expand_counters


class ScanArgumentError(BlissngError, ValueError):
    """A scan command was given arguments it cannot use; the message says which."""


def number_argument(value: Any, what: str, command_name: str) -> float:
    """A scan argument that must be a finite number (the scan commands share the message)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScanArgumentError(f"{command_name}: {what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ScanArgumentError(f"{command_name}: {what} must be finite, got {value!r}")
    return number


def count_time_argument(value: Any, command_name: str) -> float:
    """A count time: a number of at least 0 s."""
    number = number_argument(value, "count_time", command_name)
    if number < 0:
        raise ScanArgumentError(f"{command_name}: count_time must be >= 0, got {value!r}")
    return number


def int_argument(value: Any, what: str, command_name: str, minimum: int) -> int:
    """A scan argument that must be an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ScanArgumentError(f"{command_name}: {what} must be an integer, got {value!r}")
    if value < minimum:
        raise ScanArgumentError(f"{command_name}: {what} must be >= {minimum}, got {value}")
    return int(value)


def motor_argument(value: Any, command_name: str) -> Any:
    """Something that moves: a ``name``, a ``position`` and ``move``."""
    if not (hasattr(value, "move") and hasattr(value, "name") and hasattr(value, "position")):
        raise ScanArgumentError(f"{command_name}: {value!r} is not a motor")
    return value


def check_distinct(motors: Sequence[Any], command_name: str) -> None:
    """No motor given twice."""
    names = [m.name for m in motors]
    if len(set(names)) != len(names):
        raise ScanArgumentError(f"{command_name}: a motor is given twice ({', '.join(names)})")


def scan_counters(items: Sequence[Any], command_name: str) -> list[Any]:
    """The counters ``items`` name, or with none the active measurement group's enabled ones."""
    if items:
        counters = expand_counters(items)
    else:
        mg = current_context().active_mg()
        if mg is None:
            raise ScanArgumentError(
                f"{command_name}: no counters given and no active measurement group; "
                "pass counters or set one (set_active_mg(MG1))"
            )
        counters = list(mg.counters)
        if not counters:
            raise ScanArgumentError(
                f"{command_name}: the active measurement group {mg.name} has every counter "
                f"disabled; enable some ({mg.name}.enable('*'))"
            )
    if not counters:
        raise ScanArgumentError(f"{command_name}: no counter to count")
    return counters


def _fmt(value: Any) -> str:
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def scan_title(command_name: str, *args: Any) -> str:
    """A scan's title as BLISS writes it: the command and its arguments."""
    return " ".join([command_name, *(_fmt(a) for a in args)])


KEYWORDS = {
    "sleep_time",
    "stab_time",
    "title",
    "save",
    "run",
    "scan_info",
    "workflow",
    "pause_conditions",
    "display",
    # BLISS's keywords, accepted so that BLISS scripts run (see ``_commands``' docstring)
    "name",
    "scan_type",
    "scan_params",
    "save_images",
    "return_scan",
    "restore_motor_positions",
}


def check_keywords(kw: dict[str, Any], command_name: str, accepted: set[str] = KEYWORDS) -> None:
    """Refuse a keyword argument the command does not accept (a typo never ignored)."""
    unknown = set(kw) - accepted
    if unknown:
        raise ScanArgumentError(
            f"{command_name}: unknown keyword(s) {', '.join(sorted(unknown))}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )
    for key in ("sleep_time", "stab_time"):
        if kw.get(key) is not None and number_argument(kw[key], key, command_name) < 0:
            raise ScanArgumentError(f"{command_name}: {key} must be >= 0")
        if key in kw and kw[key] is None:  # BLISS passes sleep_time=None for "none"
            kw[key] = 0.0
    for key in ("scan_info", "scan_params"):
        if kw.get(key) is not None and not isinstance(kw[key], dict):
            raise ScanArgumentError(f"{command_name}: {key} must be a dict, got {kw[key]!r}")
    if kw.get("name") is not None and not str(kw["name"]).strip():
        raise ScanArgumentError(f"{command_name}: name must not be empty")


def leading_counter(count_time: Any, counters: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """``ct(diode)``: a counter given where the count time goes means 1 s on it."""
    if hasattr(count_time, "name") and not isinstance(count_time, (int, float)):
        return 1.0, (count_time, *counters)
    return count_time, counters


def motion_list(motions: Any, command_name: str) -> list[tuple[Any, float, float]]:
    """``anscan``'s list of ``(motor, start, stop)``."""
    try:
        items = [tuple(m) for m in motions]
    except TypeError:
        items = []
    if not items or any(len(m) != 3 for m in items):
        raise ScanArgumentError(
            f"{command_name}: give a list of (motor, start, stop): "
            f"{command_name}([(m1, 0, 1), (m2, 0, 2)], 10, 0.1)"
        )
    return items
