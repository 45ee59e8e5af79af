"""What the session's plot shows: BLISS's ``plotselect(*counters)`` and ``plotinit(*counters)``.

``plotselect(diode, "mon")`` chooses the curves of the live plot (the web page follows at once,
for the scan shown and the next ones) and the counter the alignment helpers use by default
(``cen()``, ``goto_peak()``...). ``plotinit(...)`` chooses them for the next scan only. The
selection is a list of counters' full names (``simct:diode``) or patterns (``"simct:*"``,
``"*diode*"``), kept in the settings Redis per session (it survives a restart); each scan
records the selection it started with in its document (``metadata.plotselect``), so that any
reader knows which curves the user wanted.

A selection entry matches a scan's counter channel by full name, label (``diode``) or shell
pattern on either (:func:`selected_channels`): the document's channel mapping decides, nothing
is guessed from how a channel is named.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from blissng.data import channel_label, counter_channels
from blissng.redisdb import ObjectSettings, SettingsStore

from ._bridge import command
from ._context import current_context
from ._counter_selection import counter_fullname, expand_counters

Listener = Callable[[list[str]], None]


class PlotSelectionValues(BaseModel):
    selected: list[str] = []


class PlotSelection:
    """A session's plot selection: ``selected`` (plotselect, persistent), ``next_scan``
    (plotinit, for one scan), and listeners told of every change (the web plot)."""

    def __init__(self, session: str, *, settings: SettingsStore | None = None) -> None:
        self.session = session
        self.selected: list[str] = []
        self.next_scan: list[str] | None = None
        self.changed_at = 0.0  # epoch s of the last plotselect (0: none in this process)
        self._listeners: list[Listener] = []
        self._store: ObjectSettings[PlotSelectionValues] | None = (
            settings.object(f"plot:{session}", PlotSelectionValues) if settings else None
        )

    async def load(self) -> None:
        """Read the stored selection (the session does this at start)."""
        if self._store is not None:
            self.selected = list((await self._store.load()).selected)

    async def select(self, names: Sequence[str]) -> list[str]:
        """``plotselect``: the curves of the plot from now on (stored)."""
        self.selected = list(names)
        self.changed_at = time.time()
        if self._store is not None:
            await self._store.set(selected=self.selected)
        self._notify()
        return self.selected

    def init(self, names: Sequence[str]) -> list[str]:
        """``plotinit``: the curves of the next scan only."""
        self.next_scan = list(names)
        return self.next_scan

    def for_scan(self) -> list[str]:
        """The selection a starting scan records, consuming ``plotinit``'s."""
        if self.next_scan is not None:
            chosen, self.next_scan = self.next_scan, None
            return chosen
        return list(self.selected)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """``listener(selected)`` after each ``select``; returns the remover."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(list(self.selected))
            except Exception:  # a closed page must not break plotselect
                self._listeners.remove(listener)

    def __info__(self) -> str:
        shown = ", ".join(self.selected) or "every counter"
        text = f"plotselect: {shown}"
        if self.next_scan is not None:
            text += f"\nplotinit (next scan): {', '.join(self.next_scan) or 'every counter'}"
        return text


def selection_names(items: Iterable[Any]) -> list[str]:
    """What ``plotselect`` stores for its arguments: counters (and controllers, measurement
    groups: their counters) by full name; strings (names, labels, patterns) as given."""
    names: list[str] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, str):
            names.append(item)
        else:
            names.extend(counter_fullname(c) for c in expand_counters([item]))
    return list(dict.fromkeys(names))


def selected_channels(document: Mapping[str, Any], selection: Sequence[str]) -> list[str]:
    """The scalar counter channels of a scan (its document) that ``selection`` chooses, in the
    scan's order; every counter when the selection is empty or chooses none of them."""
    counters = counter_channels(document, ndim=0)
    if not selection:
        return counters
    chosen = []
    for name in counters:
        label = channel_label(document, name)
        for entry in selection:
            if name == entry or label == entry or _matches(name, label, entry):
                chosen.append(name)
                break
    return chosen or counters


def _matches(name: str, label: str, pattern: str) -> bool:
    if not any(c in pattern for c in "*?["):
        return False
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(label, pattern)


def _known_counters() -> set[str]:
    """Full names and names of every counter of the session's objects."""
    known: set[str] = set()
    for obj in current_context().objects().values():
        try:
            counters = expand_counters([obj])
        except TypeError:
            continue
        for counter in counters:
            known.update((counter_fullname(counter), counter.name))
    return known


def _selection_or_fail() -> PlotSelection:
    selection = current_context().plot
    if selection is None:
        raise RuntimeError("this context has no plot (run it in a session)")
    return selection


def _warn_unknown(names: Sequence[str]) -> None:
    ctx = current_context()
    known = _known_counters()
    for name in names:
        if not any(c in name for c in "*?[") and name not in known:
            ctx.print(f"WARNING: {name!r} is not a counter of this session")


@command
async def plotselect(*counters: Any) -> None:
    """Choose the curves of the live plot and the counter ``cen()``, ``goto_peak()``... use:
    ``plotselect(diode)``, ``plotselect("simct:*")``; ``plotselect(None)`` shows every
    counter again. Kept for the next scans and across restarts."""
    ctx = current_context()
    selection = _selection_or_fail()
    if counters:
        names = selection_names(counters)
        _warn_unknown(names)
        await selection.select(names)
    shown = selection.selected
    ctx.print(f"Plotted counter(s): {', '.join(shown) if shown else 'every counter'}")


@command
async def plotinit(*counters: Any) -> None:
    """Choose the curves of the next scan only: ``plotinit(diode, mon)``."""
    ctx = current_context()
    selection = _selection_or_fail()
    names = selection_names(counters)
    _warn_unknown(names)
    selection.init(names)
    ctx.print(f"Plotted counter(s) for the next scan: {', '.join(names) or 'every counter'}")
