"""What the session has, as BLISS lists it: ``lscnt()``, ``lsmg()``, ``lsobj()``.

They read the session's objects from the command's context (``ScanContext.objects``), print a
table and return nothing (a value would be shown a second time at the prompt).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

from ._bridge import command
from ._context import current_context
from ._counter_selection import counter_controller, counter_fullname, expand_counters
from ._measurement_group import MeasurementGroup


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table: the header, a line of dashes per column, the rows (left aligned)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(f"{v:<{w}}" for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def session_counters(objects: Iterable[Any]) -> list[Any]:
    """Every counter of ``objects`` (controllers give theirs), each once, measurement groups
    aside (their counters belong to controllers)."""
    found: list[Any] = []
    seen: set[int] = set()
    for obj in objects:
        if isinstance(obj, MeasurementGroup):
            continue
        try:
            counters = expand_counters([obj])
        except TypeError:  # not a counter nor a controller
            continue
        for counter in counters:
            if id(counter) not in seen:
                seen.add(id(counter))
                found.append(counter)
    return found


def _shape(counter: Any) -> str:
    if getattr(counter, "kind", "data") == "reference":
        return "2D"
    return f"{len(getattr(counter, 'shape', ()) or ())}D"


@command
async def lscnt(container: Any = None) -> None:
    """The counters of the session (or of ``container``: a controller, a measurement group, a
    counter), sorted by full name: full name, shape, controller, name, unit."""
    ctx = current_context()
    if container is None:
        counters = session_counters(ctx.objects().values())
    else:
        counters = expand_counters([container])
    rows = []
    for counter in sorted(counters, key=counter_fullname):
        controller = counter_controller(counter)
        rows.append(
            (
                counter_fullname(counter),
                _shape(counter),
                getattr(controller, "name", "") if controller is not None else "",
                counter.name,
                getattr(counter, "unit", None) or "",
            )
        )
    ctx.print()
    ctx.print(format_table(("Fullname", "Shape", "Controller", "Name", "Unit"), rows))


@command
async def lsmg() -> None:
    """The measurement groups of the session; ``*`` marks the active one."""
    ctx = current_context()
    groups = [obj for obj in ctx.objects().values() if isinstance(obj, MeasurementGroup)]
    active = ctx.active_mg()
    if not groups:
        ctx.print("No measurement group in this session (MeasurementGroup('MG1', diode))")
        return
    for mg in groups:
        ctx.print(f" {'*' if mg is active else ' '} {mg.name}")


@command
async def lsobj(pattern: str | None = None) -> None:
    """The names of the session's objects (matching a shell ``pattern``: ``lsobj("m*")``)."""
    ctx = current_context()
    names = sorted(ctx.objects())
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, str(pattern))]
    ctx.print("  ".join(names) if names else f"no object matches {pattern!r}")
