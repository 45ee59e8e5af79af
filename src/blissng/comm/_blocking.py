"""``blocking()``: a device's blocking call (a vendor driver), through
:func:`blissng.threads.run_in_thread` (the one helper), in the words of the comm layer.

Per device, one call at a time; a call that times out raises :class:`CommTimeout` at once and
its thread is abandoned; until that thread returns, every new call for the device fails fast
with :class:`DeviceBusy`. ``device=None``: work that is not a device's, which only gets the
timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from blissng.comm._errors import CommTimeout, DeviceBusy
from blissng.threads import CallTimeout, ResourceBusy, run_in_thread, stuck_calls

T = TypeVar("T")

__all__ = ["blocking", "stuck_calls"]


async def blocking(
    fn: Callable[..., T],
    *args: Any,
    device: object | None = None,
    timeout: float | None = None,
    what: str | None = None,
) -> T:
    """Run ``fn(*args)`` in a worker thread; at most one call per ``device`` at a time.

    ``timeout`` (seconds, None = no limit) covers the wait for the device and the call; on
    expiry raises :class:`CommTimeout` naming the device, the call and the time waited. Use
    ``functools.partial`` for keyword arguments. ``what`` names the call in those messages.
    """
    try:
        return await run_in_thread(
            fn, *args, resource=device, timeout=timeout, what=what, abandon_on_cancel=True
        )
    except CallTimeout as exc:
        raise CommTimeout(
            exc.resource or "blocking call",
            exc.waited,
            command=exc.what,
            what="still waiting for the device (busy)" if exc.never_entered else "no return",
            timeout=timeout,
        ) from None
    except ResourceBusy as exc:
        raise DeviceBusy(exc.resource, exc.detail) from None
