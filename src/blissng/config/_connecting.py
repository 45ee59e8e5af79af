"""Connecting and closing a configuration's objects: once, for everything that runs one
(``blissng serve`` / ``demo``, a session, the test fixtures).

Objects connect to their hardware lazily (``async def connect()``, idempotent) and release it
with ``close()``. Each call runs concurrently with the others under its own deadline, so a
failing or hanging device never prevents the others from connecting, nor a stop from ending;
the failures come back per object name, worded by :func:`failure_text`, for the caller to
log or record.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import anyio

CONNECT_TIMEOUT = 5.0  # seconds, per object


def failure_text(verb: str, error: Exception, timeout: float) -> str:
    """``connect() did not finish within 5.0 s`` or ``connect() failed: OSError: ...``."""
    if isinstance(error, TimeoutError):
        return f"{verb}() did not finish within {timeout:.1f} s"
    return f"{verb}() failed: {type(error).__name__}: {error}"


async def _call_each(verb: str, objects: Mapping[str, Any], timeout: float) -> dict[str, Exception]:
    failures: dict[str, Exception] = {}

    async def call(name: str, method: Any) -> None:
        try:
            with anyio.fail_after(timeout):
                result = method()
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            failures[name] = exc

    async with anyio.create_task_group() as tg:
        for name, obj in objects.items():
            method = getattr(obj, verb, None)
            if callable(method) and not isinstance(obj, type):
                tg.start_soon(call, name, method)
    return failures


async def connect_objects(
    objects: Mapping[str, Any], timeout: float = CONNECT_TIMEOUT
) -> dict[str, Exception]:
    """``connect()`` every object that has one (classes are left alone), concurrently, each
    within ``timeout`` s; returns the failures by name (a ``TimeoutError`` for a deadline)."""
    return await _call_each("connect", objects, timeout)


async def close_objects(
    objects: Mapping[str, Any], timeout: float = CONNECT_TIMEOUT
) -> dict[str, Exception]:
    """``close()`` every object that has one: shielded (it runs when its caller is being
    cancelled), concurrently, each within ``timeout`` s; returns the failures by name."""
    with anyio.CancelScope(shield=True):
        failures = await _call_each("close", objects, timeout)
    return failures
