"""Why scans stop when nobody pressed Ctrl-C: the server stopping, its data Redis gone.

A publisher rides out an unreachable data Redis for ``redis_timeout`` (30 s, decision 0002),
and a cancelled scan used to be recorded as "aborted by the user". Both are wrong when the
server knows better:

- the server's embedded data Redis died and the server stops: waiting 30 s for a Redis that
  will not come back only delays the stop (it took 30 s). :func:`give_up_on_redis` tells
  every publisher of that Redis to fail at once (``after=0``), or after a grace period (a
  server stopping while its external Redis does not answer), with the reason;
- the server stops (SIGTERM) while scans run: :func:`aborting_because` makes the reason
  what the scans record (``aborted: the server is stopping (SIGTERM)``).

Process-wide state, set by the process's owner (the server, the command line) while it stops.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

_given_up: dict[str, tuple[str, float]] = {}  # address -> (reason, give up at, monotonic)
_abort_reasons: list[str] = []


def redis_address(target: Any) -> str:
    """Where a Redis is, from a URL or a redis-py client: ``/path/to.sock`` or
    ``host:port`` (databases of one server share its fate)."""
    if isinstance(target, str):
        parts = urlsplit(target)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    kwargs = target.connection_pool.connection_kwargs
    path = kwargs.get("path")
    return str(path) if path else f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def give_up_on_redis(target: Any, reason: str, *, after: float = 0.0) -> None:
    """Publishers of this Redis that cannot reach it stop retrying ``after`` seconds from
    now and fail their scan with ``reason``."""
    address = redis_address(target)
    deadline = time.monotonic() + after
    earlier = _given_up.get(address)
    if earlier is None or earlier[1] > deadline:  # the sooner give-up stands
        _given_up[address] = (reason, deadline)


def forget_redis(target: Any) -> None:
    """Undo :func:`give_up_on_redis` (the Redis is back, or the server that gave up left)."""
    _given_up.pop(redis_address(target), None)


def given_up(address: str) -> str | None:
    """The reason to stop waiting for the Redis at ``address`` now, or None."""
    entry = _given_up.get(address)
    if entry is None or time.monotonic() < entry[1]:
        return None
    return entry[0]


@contextlib.contextmanager
def aborting_because(reason: str) -> Iterator[None]:
    """Scans cancelled during the block record ``reason`` instead of "by the user"."""
    _abort_reasons.append(reason)
    try:
        yield
    finally:
        _abort_reasons.remove(reason)


def abort_reason() -> str | None:
    """Why a scan cancelled now is aborted (None: its user cancelled it)."""
    return _abort_reasons[-1] if _abort_reasons else None


__all__ = [
    "abort_reason",
    "aborting_because",
    "forget_redis",
    "give_up_on_redis",
    "given_up",
    "redis_address",
]
