"""What a GUI shows of a session's objects, and reading the motors' positions for it.

The session layer knows which objects move (:class:`blissng.devices.Movable`); the
web layer above asks it, instead of reaching past the session into the devices layer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import anyio

from blissng.devices import Movable


def describe_object(name: str, obj: Any) -> dict[str, Any]:
    """What a GUI shows of an object (no I/O): its name, class and kind; a motor's last known
    position, state, unit and limits; a counter controller's counters. Values are as the
    object gives them (the caller makes them JSON)."""
    state: dict[str, Any] = {"name": name, "class": type(obj).__name__}
    if isinstance(obj, Movable):
        state["kind"] = "motor"
        state["position"] = obj.position
        value = getattr(obj, "state", None)
        state["state"] = value.value if isinstance(value, enum.Enum) else value
        for attr in ("unit", "limits"):
            try:
                state[attr] = getattr(obj, attr, None)
            except Exception as exc:  # a property that needs the hardware
                state[attr] = f"{type(exc).__name__}: {exc}"
    elif hasattr(obj, "counters"):
        state["kind"] = "counters"
        state["counters"] = [getattr(c, "name", str(c)) for c in obj.counters]
    else:
        state["kind"] = "object"
    return state


async def read_positions(objects: Mapping[str, Any]) -> None:
    """Read the position of each motor among ``objects`` from its hardware, concurrently, each
    within 2 s; a motor that fails or is slow keeps its last known position."""
    async with anyio.create_task_group() as tg:
        for obj in objects.values():
            if isinstance(obj, Movable):
                tg.start_soon(_read_one, obj)


async def _read_one(motor: Any) -> None:
    with anyio.move_on_after(2.0):
        try:
            await motor.read_position()
        except Exception:  # the state shows the last known position
            pass
