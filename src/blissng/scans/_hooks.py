"""Start-of-scan and end-of-scan hooks: how higher layers react to scans without the scans
layer importing them (workflows submit a fit when a scan ends, a session logs scans).

A hook is a function (sync or async) taking a :class:`ScanEvent`. Hooks belong to a
:class:`ScanHooks`, the hooks of one server (``server.scan_hooks``, shared by its sessions'
scan contexts) or of one :class:`~blissng.scans.ScanContext` used without a server;
a scan runs the hooks of its context (``ctx.hooks``), so two servers in one process never see
each other's scans. Register a hook once::

    remove = server.scan_hooks.add_scan_end_hook(on_scan_end)  # or ctx.hooks

Every scan calls the start hooks after its document is published (its ``scan_id``/``key`` are
readable) and before the first point, and the end hooks after it closed, whatever the
outcome (``event.state`` is ``done``, ``aborted`` or ``failed``). The ``workflow=`` keyword of
the scan commands arrives untouched as ``event.workflow`` (``None`` when not given).

A failing hook never fails the scan: its error is printed as a warning. End hooks run shielded
from cancellation (an aborted scan still reports its end) with a deadline of
``HOOK_DEADLINE`` seconds; keep them short (submit work, do not do it).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from ._scan import Scan

log = logging.getLogger(__name__)

HOOK_DEADLINE = 5.0


@dataclasses.dataclass(frozen=True)
class ScanEvent:
    """What a hook learns about a scan."""

    phase: str  # "start" or "end"
    scan: Scan
    scan_id: str | None  # the data layer's id (None if not published to Redis)
    key: str | None  # blissng:scan:<id>
    session: str
    number: int
    name: str
    state: str  # "running" at start; "done", "aborted" or "failed" at the end
    workflow: Any = None
    error: str | None = None
    redis_url: str | None = None  # the data Redis the scan is published in


Hook = Callable[[ScanEvent], Awaitable[None] | None]


async def _call(hook: Hook, event: ScanEvent, warn: Callable[[str], None]) -> None:
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        name = getattr(hook, "__qualname__", repr(hook))
        warn(f"WARNING: scan {event.phase} hook {name} failed: {type(exc).__name__}: {exc}")
        log.warning("scan %s hook %s failed", event.phase, name, exc_info=True)


def _add(hooks: list[Hook], hook: Hook) -> Callable[[], None]:
    hooks.append(hook)

    def remove() -> None:
        if hook in hooks:
            hooks.remove(hook)

    return remove


class ScanHooks:
    """The start and end hooks of the scans of one server (or of one scan context)."""

    def __init__(self) -> None:
        self._start: list[Hook] = []
        self._end: list[Hook] = []

    def __repr__(self) -> str:
        return f"<ScanHooks {len(self._start)} start, {len(self._end)} end>"

    def add_scan_start_hook(self, hook: Hook) -> Callable[[], None]:
        """Call ``hook(event)`` when each scan starts; returns the function that removes it."""
        return _add(self._start, hook)

    def add_scan_end_hook(self, hook: Hook) -> Callable[[], None]:
        """Call ``hook(event)`` when each scan has ended; returns the function that removes
        it."""
        return _add(self._end, hook)

    async def run_start_hooks(self, event: ScanEvent, warn: Callable[[str], None]) -> None:
        for hook in list(self._start):
            await _call(hook, event, warn)

    async def run_end_hooks(self, event: ScanEvent, warn: Callable[[str], None]) -> None:
        if not self._end:
            return
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + HOOK_DEADLINE
            for hook in list(self._end):
                await _call(hook, event, warn)
        if scope.cancelled_caught:
            warn(f"WARNING: scan end hooks did not finish within {HOOK_DEADLINE} s")
