"""One async Redis client per (URL, event loop), shared by the scans of a process.

redis-py clients own a connection pool bound to the loop they were first used on; scans
reuse one instead of connecting per scan.
"""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as aredis

from blissng.redisdb import async_client

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(url: str) -> aredis.Redis:
    """The client for ``url`` on the running loop (created on first use)."""
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    client = per_loop.get(url)
    if client is None:
        client = per_loop[url] = async_client(url)
    return client


async def close_shared_clients() -> None:
    """Close this loop's clients (a session or a test does it when it stops)."""
    loop = asyncio.get_running_loop()
    for client in _clients.pop(loop, {}).values():
        await client.aclose()
