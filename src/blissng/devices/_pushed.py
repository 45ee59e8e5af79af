"""Values a control system pushes (Tango change events, EPICS monitors), kept for the loop.

A controller over Tango or EPICS subscribes to its motor's state and position; each event
updates a :class:`Pushed` on the event loop and wakes whoever waits for the next change
(:meth:`Pushed.wait_change`), so an axis sees the end of a motion when it is announced,
without polling. ``live`` says whether the values are trustworthy: false until the
subscription delivered its first value, and again after an error event (the server gone): then
the controller reads the hardware instead until it has subscribed again.
"""

from __future__ import annotations

import time
from typing import Any

import anyio


class Pushed:
    """The latest pushed values of one device (by key: ``"state"``, ``"position"``...)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.live = False
        self.error: BaseException | None = None
        self.updates = 0  # values received, all keys
        self.last_update = 0.0  # time.monotonic() of the last one
        self._changed: anyio.Event | None = None

    def update(self, key: str, value: Any) -> None:
        """A new value (call on the event loop)."""
        self.values[key] = value
        self.updates += 1
        self.last_update = time.monotonic()
        self._wake()

    def fail(self, error: BaseException) -> None:
        """An error event: values are stale until the controller subscribes again."""
        self.live = False
        self.error = error
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def wait_change(self, timeout: float) -> bool:
        """Wait for the next update or error; False if none came within ``timeout`` s."""
        if self._changed is None:
            self._changed = anyio.Event()
        changed = self._changed
        with anyio.move_on_after(timeout):
            await changed.wait()
            return True
        return False

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


__all__ = ["Pushed"]
