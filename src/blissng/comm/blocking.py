"""``blocking()``: THE way to run a blocking call (a vendor driver, h5py, ``os.statvfs``).

The call runs in a worker thread (``anyio.to_thread``), so the event loop never freezes. Per
device, a ``CapacityLimiter(1)`` serialises the calls: a driver is never entered twice at once.

A thread cannot be killed. When a call times out, the caller gets a :class:`CommTimeout` at
once, but the thread may still be inside the driver: until it returns, every new call for that
device fails fast with :class:`DeviceBusy` (instead of piling up threads in a driver that is
stuck, or entering it concurrently). ``device=None`` uses a shared limiter for work that is not
a device's (file-system queries): those calls only get the timeout.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from blissng.comm.errors import CommTimeout, DeviceBusy

T = TypeVar("T")

DEFAULT_CAPACITY = 16  # shared limiter for device=None

_limiters: RunVar[dict[str, anyio.CapacityLimiter]] = RunVar("blissng_comm_limiters")


@dataclasses.dataclass
class _Stuck:
    """A call that timed out and whose thread has not returned yet."""

    what: str
    started: float
    timeout: float


_stuck: dict[str, _Stuck] = {}
_stuck_lock = threading.Lock()


def device_key(device: object | None) -> str | None:
    """The name a device is known by: a string, or an object's ``name``."""
    if device is None or isinstance(device, str):
        return device
    name = getattr(device, "name", None)
    return name if isinstance(name, str) else f"{type(device).__name__}@{id(device):x}"


def _limiter(key: str | None) -> anyio.CapacityLimiter:
    try:
        limiters = _limiters.get()
    except LookupError:
        limiters = {}
        _limiters.set(limiters)
    slot = "" if key is None else key
    limiter = limiters.get(slot)
    if limiter is None:
        limiter = anyio.CapacityLimiter(DEFAULT_CAPACITY if key is None else 1)
        limiters[slot] = limiter
    return limiter


def _describe(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    shown = ", ".join(repr(a) if len(repr(a)) < 40 else repr(a)[:37] + "..." for a in args)
    return f"{name}({shown})"


def stuck_calls() -> dict[str, str]:
    """Devices failing fast right now, with the call that is still running in its thread."""
    now = time.monotonic()
    with _stuck_lock:
        return {key: f"{s.what}, running for {now - s.started:.1f} s" for key, s in _stuck.items()}


def _check_not_stuck(key: str | None) -> None:
    if key is None:
        return
    with _stuck_lock:
        stuck = _stuck.get(key)
    if stuck is not None:
        raise DeviceBusy(
            key,
            f"an earlier call {stuck.what} timed out after {stuck.timeout:.3f} s and is still "
            f"running in its thread ({time.monotonic() - stuck.started:.1f} s); failing fast "
            "until it returns",
        )


async def blocking(
    fn: Callable[..., T],
    *args: Any,
    device: object | None = None,
    timeout: float | None = None,
) -> T:
    """Run ``fn(*args)`` in a worker thread; at most one call per ``device`` at a time.

    ``timeout`` (seconds, None = no limit) covers the wait for the device and the call; on
    expiry raises :class:`CommTimeout` naming the device, the call and the time waited. Use
    ``functools.partial`` for keyword arguments.
    """
    key = device_key(device)
    what = _describe(fn, args)
    _check_not_stuck(key)
    limiter = _limiter(key)
    done = threading.Event()
    started = time.monotonic()
    token = _Stuck(what, started, timeout if timeout is not None else 0.0)

    def run() -> T:
        try:
            return fn(*args)
        finally:
            with _stuck_lock:
                done.set()
                if key is not None and _stuck.get(key) is token:
                    del _stuck[key]

    start = anyio.current_time()
    entered = False
    with anyio.move_on_after(timeout) as scope:
        async with limiter:
            _check_not_stuck(key)  # it may have got stuck while we waited for the limiter
            entered = True
            try:
                return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
            finally:
                # Cancelled (timeout or abort) while the thread still runs: remember it.
                with _stuck_lock:
                    if not done.is_set() and key is not None:
                        _stuck[key] = token
    waited = anyio.current_time() - start
    assert scope.cancelled_caught
    what_failed = "no return" if entered else "still waiting for the device (busy)"
    raise CommTimeout(
        key or "blocking call", waited, command=what, what=what_failed, timeout=timeout
    )
