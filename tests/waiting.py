"""Waiting in tests for a condition that no event announces: a key in Redis, the status of a
publisher, a motor that started moving, a command another task runs.

``await wait_until(lambda: ...)`` polls the condition (a plain or an async callable) within a
deadline: the test fails with ``TimeoutError`` instead of hanging, and never guesses a sleep.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

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
