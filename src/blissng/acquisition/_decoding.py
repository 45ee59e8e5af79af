"""CPU-heavy decoding of device payloads, off the event loop and fair to it.

A reading loop that parses or reduces a large payload (a 64 kB spectrum block, a frame
header table, text packets) on the event loop holds every other reader up meanwhile. It calls
:func:`decode_in_thread` instead. Decoding threads share one limiter per event loop, sized to
the machine's cores: more threads than cores only add contention for the GIL, and every
thread the pool creates costs the loop a wait (``Thread.start`` blocks until the new thread
runs; on a loaded machine that was measured at 76 ms). :func:`warm_decode_threads` creates
them ahead of time, before a scan rather than during it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from anyio.lowlevel import RunVar

from blissng.threads import run_in_thread

T = TypeVar("T")

_limiter: RunVar[anyio.CapacityLimiter] = RunVar("blissng_decode_limiter")


def decode_threads() -> int:
    """How many decoding threads run at once: the cores this process may use, at least 2."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 2
    return max(2, cores)


def decode_limiter() -> anyio.CapacityLimiter:
    """The event loop's shared limiter of decoding threads."""
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(decode_threads())
        _limiter.set(limiter)
        return limiter


async def decode_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a decoding thread; the loop stays free meanwhile."""
    return await run_in_thread(fn, *args, limiter=decode_limiter())


async def warm_decode_threads() -> None:
    """Start the decoding threads now (all at once, each held until all have started)."""
    limiter = decode_limiter()
    count = int(limiter.total_tokens)
    started = 0
    all_started = anyio.Event()

    async def occupy() -> None:
        nonlocal started

        def wait_for_the_others() -> None:
            anyio.from_thread.run_sync(mark_started)
            anyio.from_thread.run(all_started.wait)

        await run_in_thread(wait_for_the_others, limiter=limiter)

    def mark_started() -> None:
        nonlocal started
        started += 1
        if started == count:
            all_started.set()

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(occupy)
