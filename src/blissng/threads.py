"""``run_in_thread()``: THE way to run a blocking call (a vendor driver, h5py, ``os.statvfs``,
a file read, a process join) from async code.

It sits at the bottom of the layers (it imports only :mod:`blissng.errors`), so every package
uses it; a direct ``anyio.to_thread.run_sync`` elsewhere says, in a comment, why not
(tests/test_architecture.py checks).

The call runs in a worker thread, so the event loop never freezes. What it adds to anyio's:

- a **limiter**: per ``resource`` (a device, a file system) a ``CapacityLimiter(1)`` serialises
  the calls, so a driver is never entered twice at once; otherwise the ``limiter`` given, else
  anyio's default thread limiter;
- a **timeout** that really gives up: on expiry the caller gets :class:`CallTimeout` at once
  and the thread is abandoned (a thread cannot be killed; it may still be inside the driver or
  the kernel). ``abandon_on_cancel=True`` does the same on any cancellation;
- **fail-fast while a thread is stuck**: until an abandoned call on a ``resource`` returns,
  every new call for that resource fails at once with :class:`ResourceBusy`, instead of piling
  up threads in a driver or a mount that does not answer, or entering it concurrently.

Callers translate the two errors into their layer's words (``blissng.comm.blocking`` into
``CommTimeout`` / ``DeviceBusy``, the scans layer and the writer into their file-system errors).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from blissng.errors import BlissngError

T = TypeVar("T")

_limiters: RunVar[dict[str, anyio.CapacityLimiter]] = RunVar("blissng_resource_limiters")


class CallTimeout(BlissngError, TimeoutError):
    """A blocking call did not return within its timeout (its thread was abandoned)."""

    def __init__(self, resource: str | None, what: str, waited: float, timeout: float | None):
        self.resource = resource
        self.what = what
        self.waited = waited
        self.timeout = timeout
        #: True when the call never got the resource (an earlier call held it all along).
        self.never_entered = False
        super().__init__(f"{what}: no return after {waited:.3f} s (timeout {timeout} s)")


class ResourceBusy(BlissngError):
    """An earlier call on the same resource timed out or was abandoned and still runs in its
    thread: failing fast until it returns."""

    def __init__(self, resource: str, detail: str) -> None:
        self.resource = resource
        self.detail = detail
        super().__init__(f"{resource}: {detail}")


@dataclasses.dataclass
class _Stuck:
    """A call that was abandoned and whose thread has not returned yet."""

    what: str
    started: float
    timeout: float


# Process-wide on purpose: a thread stuck in a driver or a mount is stuck for every event loop
# of the process.
_stuck: dict[str, _Stuck] = {}
_stuck_lock = threading.Lock()


def resource_key(resource: object | None) -> str | None:
    """The name a resource is known by: a string, or an object's ``name``."""
    if resource is None or isinstance(resource, str):
        return resource
    name = getattr(resource, "name", None)
    return name if isinstance(name, str) else f"{type(resource).__name__}@{id(resource):x}"


def _resource_limiter(key: str) -> anyio.CapacityLimiter:
    try:
        limiters = _limiters.get()
    except LookupError:
        limiters = {}
        _limiters.set(limiters)
    limiter = limiters.get(key)
    if limiter is None:
        limiter = limiters[key] = anyio.CapacityLimiter(1)
    return limiter


def describe_call(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """``name(arg, ...)``, each argument shortened, for messages."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    shown = ", ".join(repr(a) if len(repr(a)) < 40 else repr(a)[:37] + "..." for a in args)
    return f"{name}({shown})"


def stuck_calls() -> dict[str, str]:
    """Resources failing fast right now, with the call that is still running in its thread."""
    now = time.monotonic()
    with _stuck_lock:
        return {key: f"{s.what}, running for {now - s.started:.1f} s" for key, s in _stuck.items()}


def _check_not_stuck(key: str | None) -> None:
    if key is None:
        return
    with _stuck_lock:
        stuck = _stuck.get(key)
    if stuck is not None:
        raise ResourceBusy(
            key,
            f"an earlier call {stuck.what} timed out after {stuck.timeout:.3f} s and is still "
            f"running in its thread ({time.monotonic() - stuck.started:.1f} s); failing fast "
            "until it returns",
        )


async def run_in_thread(
    fn: Callable[..., T],
    *args: Any,
    resource: object | None = None,
    timeout: float | None = None,
    what: str | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
) -> T:
    """Run ``fn(*args)`` in a worker thread; at most one call per ``resource`` at a time.

    ``timeout`` (seconds, None = no limit) covers the wait for the resource and the call; on
    expiry raises :class:`CallTimeout` and abandons the thread. Without a timeout, a
    cancellation waits for the thread to return unless ``abandon_on_cancel``. Use
    ``functools.partial`` for keyword arguments. ``what`` names the call in messages (default:
    the function and its arguments, described only when a message needs it, so a large array
    argument costs nothing).
    """
    key = resource_key(resource)
    if key is None and timeout is None:
        # Nothing to serialise, time or remember: anyio's call as it is (no cost added).
        return await anyio.to_thread.run_sync(
            fn, *args, limiter=limiter, abandon_on_cancel=abandon_on_cancel
        )
    resource_limiter: anyio.CapacityLimiter | contextlib.nullcontext[None] = (
        contextlib.nullcontext()
    )
    if key is not None:
        if limiter is not None:
            raise ValueError("a resource has its own limiter: give one or the other")
        _check_not_stuck(key)
        resource_limiter = _resource_limiter(key)
    abandon = abandon_on_cancel or timeout is not None
    lock = _stuck_lock
    state = {"started": False, "abandoned": False, "done": False}
    token: _Stuck | None = None
    started = time.monotonic()

    def run() -> T:
        with lock:
            if state["abandoned"]:
                # Abandoned before this thread took the call: do not run it at all.
                raise anyio.get_cancelled_exc_class()
            state["started"] = True
        try:
            return fn(*args)
        finally:
            with lock:
                state["done"] = True
                if key is not None and token is not None and _stuck.get(key) is token:
                    del _stuck[key]

    start = anyio.current_time()
    entered = False
    with anyio.move_on_after(timeout) as scope:
        async with resource_limiter:
            _check_not_stuck(key)  # it may have got stuck while we waited for the resource
            entered = True
            try:
                return await anyio.to_thread.run_sync(
                    run, limiter=limiter, abandon_on_cancel=abandon
                )
            finally:
                with lock:
                    if not state["done"]:
                        if not state["started"]:
                            state["abandoned"] = True  # the thread will not run it
                        elif key is not None:
                            # Cancelled while the thread still runs: the resource is stuck.
                            token = _Stuck(what or describe_call(fn, args), started, timeout or 0)
                            _stuck[key] = token
    waited = anyio.current_time() - start
    assert scope.cancelled_caught
    error = CallTimeout(key, what or describe_call(fn, args), waited, timeout)
    error.never_entered = not entered
    raise error
