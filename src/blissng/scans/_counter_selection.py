"""Turn what a user passes to a scan (counters, controllers, measurement groups) into the
counters to read, grouped by the controller that reads them together in one call.

- a counter controller / detector (an ``Acquirable``: ``prepare``/``read`` and ``counters``)
  stands for all its counters;
- a measurement group (``counters`` but not acquirable) stands for its enabled counters;
- a counter is itself; its controller is its ``controller`` attribute (or ``_controller``).

A counter that does not name its controller (a minimal ``Acquirable`` of another library) is
carried as a :class:`ListedCounter`: the counter with the controller that listed it, so that
the controller reads it. Nothing is remembered elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from blissng.devices import Acquirable
from blissng.errors import BlissngError


class CounterSelectionError(BlissngError, TypeError):
    """Something given as a counter is none of counter, controller or measurement group."""


def is_acquirable(obj: Any) -> bool:
    return isinstance(obj, Acquirable)


def counter_fullname(counter: Any) -> str:
    fullname = getattr(counter, "fullname", None)
    if isinstance(fullname, str) and fullname:
        return fullname
    controller = counter_controller(counter)
    if controller is not None and getattr(controller, "name", None):
        return f"{controller.name}:{counter.name}"
    return str(counter.name)


def counter_controller(counter: Any) -> Any | None:
    for attr in ("controller", "_controller", "acquirable"):
        controller = getattr(counter, attr, None)
        if controller is not None:
            return controller
    return None


class ListedCounter:
    """A counter that does not name its controller, with the controller that listed it
    (``listed_by``); every other attribute is the counter's."""

    def __init__(self, counter: Any, listed_by: Any) -> None:
        self.counter = counter
        self.listed_by = listed_by

    def __getattr__(self, name: str) -> Any:
        return getattr(self.counter, name)

    def __repr__(self) -> str:
        return f"<ListedCounter {self.counter!r} of {self.listed_by!r}>"


def expand_counters(items: Iterable[Any]) -> list[Any]:
    """Counters of ``items``, in order, each once."""
    result: list[Any] = []
    seen: set[int] = set()

    def add(counter: Any) -> None:
        key = id(counter.counter if isinstance(counter, ListedCounter) else counter)
        if key not in seen:
            seen.add(key)
            result.append(counter)

    for item in items:
        if isinstance(item, (list, tuple, set)):
            for counter in expand_counters(item):
                add(counter)
        elif is_acquirable(item):
            for counter in item.counters:
                if counter_controller(counter) is None:
                    counter = ListedCounter(counter, item)
                add(counter)
        elif hasattr(item, "counters") and not hasattr(item, "dtype"):
            for counter in expand_counters(item.counters):
                add(counter)
        elif hasattr(item, "name") and hasattr(item, "dtype") and hasattr(item, "shape"):
            add(item)
        else:
            raise CounterSelectionError(
                f"{item!r} is not a counter, a counter controller or a measurement group; "
                "pass counters (diode), controllers (scaler) or groups (MG1)"
            )
    return result


def group_by_controller(counters: Iterable[Any]) -> list[tuple[Any, list[Any]]]:
    """``[(controller, [its counters])]`` in the order controllers first appear."""
    groups: dict[int, tuple[Any, list[Any]]] = {}
    for counter in counters:
        controller = counter_controller(counter)
        if controller is None and isinstance(counter, ListedCounter):
            controller = counter.listed_by
        if controller is None:
            raise CounterSelectionError(
                f"counter {counter.name!r} has no controller to read it; pass its controller"
            )
        groups.setdefault(id(controller), (controller, []))[1].append(counter)
    return list(groups.values())
