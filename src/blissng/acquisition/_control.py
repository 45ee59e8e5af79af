"""ScanControl: the handle the scans layer holds on a running chain.

- ``abort()`` cancels the chain's scope; cleanup (stop every node) runs shielded.
- ``pause()`` / ``resume()`` take effect at the checkpoint between points; a paused scan holds
  its devices (nothing is stopped).
- Pause conditions (a beam-current below a threshold) are checked before every point and again
  after it, before its data is committed: if one holds after the point, the point's data is
  discarded, the scan waits until every condition clears, then the same point is repeated. No
  point index ever appears twice in the channels.
- Point callbacks receive the committed point (for the live display).
"""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import numpy as np

log = logging.getLogger(__name__)

PointCallback = Callable[[int, Mapping[str, np.ndarray]], None]
Predicate = Callable[[], bool | Awaitable[bool]]


class ScanState(enum.Enum):
    IDLE = "idle"
    PREPARING = "preparing"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    DONE = "done"
    ABORTED = "aborted"
    FAILED = "failed"


class PauseCondition:
    """Pauses the scan while ``holds()`` is true (``holds`` may be sync or async).

    ``PauseCondition("beam lost", lambda: machine.current < 10)``, or with the helper
    ``PauseCondition.below("beam", read_current, 10)`` where ``read_current`` returns a number
    (sync or async; the scans layer binds a counter's reading to it). While paused, the
    condition is polled every ``poll_interval`` seconds.
    """

    def __init__(self, name: str, holds: Predicate, *, poll_interval: float = 0.05) -> None:
        self.name = name
        self._holds = holds
        self._is_async = inspect.iscoroutinefunction(holds)
        self.poll_interval = poll_interval

    @classmethod
    def below(
        cls,
        name: str,
        read_value: Callable[[], float | Awaitable[float]],
        threshold: float,
        *,
        poll_interval: float = 0.05,
    ) -> PauseCondition:
        """Holds while ``read_value()`` is below ``threshold``."""

        async def holds() -> bool:
            value = read_value()
            if inspect.isawaitable(value):
                value = await value
            return float(value) < threshold

        return cls(name, holds, poll_interval=poll_interval)

    async def holds(self) -> bool:
        if self._is_async:
            return bool(await self._holds())  # type: ignore[misc]
        result = self._holds()
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    def __repr__(self) -> str:
        return f"<PauseCondition {self.name}>"


class ScanControl:
    """Abort, pause and resume a running chain; follow its points.

    One control drives one run. Created by the caller (the scans layer) and passed to
    :meth:`AcquisitionChain.run`; every method is safe to call from the event loop at any time
    (also before the run starts: an abort then makes the run stop at once).
    """

    def __init__(self, pause_conditions: list[PauseCondition] | None = None) -> None:
        self.pause_conditions: list[PauseCondition] = list(pause_conditions or [])
        self.state = ScanState.IDLE
        self.point_index = 0  # points committed so far
        self.npoints = 0  # expected points of the top master (0 = until stopped)
        self.repeated_points = 0
        self.pause_reason: str | None = None
        self.abort_requested = False
        self._pause_requested = False
        self._resumed: anyio.Event | None = None
        self._paused_event: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._point_callbacks: list[PointCallback] = []
        self._state_callbacks: list[Callable[[ScanState], None]] = []

    # -- commands -----------------------------------------------------------------------------
    def abort(self) -> None:
        """Cancel the run: the chain stops every node (shielded) and raises
        :class:`~blissng.errors.Aborted`."""
        self.abort_requested = True
        if self._scope is not None:
            self._scope.cancel()

    def pause(self) -> None:
        """Pause at the next checkpoint between points (devices stay held)."""
        self._pause_requested = True

    def resume(self) -> None:
        """Resume a scan paused by :meth:`pause` (conditions still have to clear)."""
        self._pause_requested = False
        if self._resumed is not None:
            self._resumed.set()

    @property
    def paused(self) -> bool:
        return self.state is ScanState.PAUSED

    async def wait_paused(self) -> None:
        """Return once the scan is paused (for tests and for UIs that confirm a pause)."""
        while not self.paused:
            if self._paused_event is None:
                self._paused_event = anyio.Event()
            await self._paused_event.wait()

    # -- followers ----------------------------------------------------------------------------
    def add_point_callback(self, callback: PointCallback) -> None:
        """``callback(index, {channel name: value})`` after each committed point (sync, fast)."""
        self._point_callbacks.append(callback)

    def add_state_callback(self, callback: Callable[[ScanState], None]) -> None:
        """``callback(state)`` at every state change."""
        self._state_callbacks.append(callback)

    # -- used by the chain that runs with this control ---------------------------------------
    def attach_scope(self, scope: anyio.CancelScope) -> None:
        """The run's cancel scope, which :meth:`abort` cancels (at once if an abort came
        before the run)."""
        self._scope = scope
        if self.abort_requested:
            scope.cancel()

    @property
    def pause_requested(self) -> bool:
        """A user pause is pending (the chain calls :meth:`wait_resumed` at its checkpoint)."""
        return self._pause_requested

    @property
    def has_point_callbacks(self) -> bool:
        """Someone follows the points (else the chain skips gathering each point's values)."""
        return bool(self._point_callbacks)

    def set_state(self, state: ScanState) -> None:
        """Enter ``state`` and tell the state callbacks (a failing callback is logged)."""
        self.state = state
        if state is ScanState.PAUSED and self._paused_event is not None:
            self._paused_event.set()
            self._paused_event = None
        for callback in self._state_callbacks:
            try:
                callback(state)
            except Exception:
                log.exception("scan state callback %r failed", callback)

    def notify_point(self, index: int, values: Mapping[str, Any]) -> None:
        """Give a committed point to the point callbacks (a failing callback is logged)."""
        for callback in self._point_callbacks:
            try:
                callback(index, values)
            except Exception:
                log.exception("scan point callback %r failed", callback)

    async def first_holding(self) -> PauseCondition | None:
        """The first pause condition that holds now, if any."""
        for condition in self.pause_conditions:
            if await condition.holds():
                return condition
        return None

    async def wait_resumed(self) -> None:
        """Block while paused by the user; return at once otherwise."""
        if not self._pause_requested:
            return
        self.pause_reason = "paused by user"
        self.set_state(ScanState.PAUSED)
        log.info("scan paused")
        while self._pause_requested:
            self._resumed = anyio.Event()
            await self._resumed.wait()
        self.pause_reason = None
        self.set_state(ScanState.RUNNING)

    async def wait_conditions_clear(self, condition: PauseCondition) -> None:
        """Paused by ``condition``: poll all conditions until none holds."""
        self.pause_reason = condition.name
        self.set_state(ScanState.PAUSED)
        log.warning("scan paused: %s", condition.name)
        holding: PauseCondition | None = condition
        while holding is not None:
            await anyio.sleep(holding.poll_interval)
            holding = await self.first_holding()
        log.warning("scan resumed: %s cleared", condition.name)
        self.pause_reason = None
        self.set_state(ScanState.RUNNING)
