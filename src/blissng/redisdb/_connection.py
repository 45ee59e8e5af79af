"""Async connection pools (redis.asyncio, with hiredis when installed).

One client per URL and event loop is enough: a client owns a pool, and pools are not shared
across event loops.
"""

from __future__ import annotations

import redis.asyncio as aredis


def async_client(url: str, **kwargs: object) -> aredis.Redis:
    """An async client on ``url``; responses are bytes (scan data is binary)."""
    options: dict[str, object] = {"health_check_interval": 10}
    options.update(kwargs)
    return aredis.Redis.from_url(url, **options)  # type: ignore[arg-type]


def text(value: object) -> str:
    """A Redis reply as text: clients return bytes (see ``async_client``), keys and IDs are
    UTF-8, and a value already decoded (or a number) is passed through ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)
