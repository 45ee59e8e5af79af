"""Waiting in tests for a condition that no event announces: a key in Redis, the status of a
publisher, a motor that started moving, a command another task runs.

``await wait_until(lambda: ...)`` polls the condition (a plain or an async callable) within a
deadline: the test fails with ``TimeoutError`` instead of hanging, and never guesses a sleep.
``wait_until_sync`` does the same in a plain (not async) test.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
) -> None:
    """Return as soon as ``condition()`` is true; raise ``TimeoutError`` after ``timeout`` s."""
    with anyio.fail_after(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(interval)


async def wait_frames_accounted(
    device: Any, npoints: int, timeout: float = 10.0
) -> tuple[int, int]:
    """A hardware-triggered simulator (MCA, camera) after ``npoints`` pulses: every pulse is
    either a frame or counted as missed (a stalled, loaded machine may make it miss one).
    Waits until all are accounted for; returns (frames, missed)."""
    counts = (0, 0)

    async def accounted() -> bool:
        nonlocal counts
        counts = (await device.hw_frames(), await device.missed_triggers())
        return sum(counts) >= npoints

    await wait_until(accounted, timeout=timeout)
    return counts


def wait_until_sync(
    condition: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.01
) -> None:
    """``wait_until`` for synchronous tests (a file a server thread writes, a page)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the condition did not hold within {timeout} s")
        time.sleep(interval)
