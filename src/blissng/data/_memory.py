"""The memory policy of the data Redis: TTLs, the writer's "written" mark, the memory guard.

Nothing unwritten is ever dropped: the guard trims only what the writer acknowledged; when
Redis holds nothing else, it says so (``blissng:memory`` state ``full``) and new scans refuse
to start (:func:`check_can_start_scan`). See docs/data-model.md ("TTL rules", "memory guard").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
import redis.asyncio as aredis

from blissng.redisdb import async_client
from blissng.redisdb import text as _text

from . import _keys as keys
from ._errors import DataMemoryFull, ScanNotFound

log = logging.getLogger("blissng.data.memory")  # its name before the module was private

# Above this fraction of maxmemory, new scans are refused even if no guard runs.
HARD_LIMIT = 0.95


async def _scan_document(client: aredis.Redis, scan_id: str) -> dict[str, Any]:
    raw = await client.hget(keys.scan_key(scan_id), "doc")
    if raw is None:
        raise ScanNotFound(f"scan {scan_id!r} is not in the data Redis (expired or never created)")
    return json.loads(raw)


def scan_keys(document: Mapping[str, Any]) -> list[str]:
    """Every key of a scan, from its document."""
    sid = document["id"]
    return [
        keys.scan_key(sid),
        keys.state_key(sid),
        keys.ack_key(sid),
        *(channel["key"] for channel in document["channels"].values()),
    ]


async def mark_scan_written(client: aredis.Redis, scan_id: str, *, file: str | None = None) -> None:
    """The writer calls this when a scan is entirely on disk: sets ``written`` and starts the
    scan's TTL (``retention.written_ttl`` from its document), in one transaction."""
    document = await _scan_document(client, scan_id)
    ttl = int(document.get("retention", {}).get("written_ttl", 300))
    fields = {"written": "1", "written_time": repr(time.time())}
    if file:
        fields["file"] = file
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.ack_key(scan_id), mapping=fields)  # type: ignore[arg-type]
        for key in scan_keys(document):
            pipe.expire(key, ttl)
        await pipe.execute()


async def acknowledge(client: aredis.Redis, scan_id: str, counts: Mapping[str, int]) -> None:
    """The writer calls this after flushing: ``{channel: points safely on disk}``."""
    if counts:
        await client.hset(
            keys.ack_key(scan_id),
            mapping={name: int(count) for name, count in counts.items()},
        )


@dataclasses.dataclass(frozen=True)
class MemoryStatus:
    """What the guard found: ``state`` is ``ok`` or ``full``."""

    state: str
    used: int
    max: int
    message: str
    trimmed_entries: int = 0

    @property
    def ratio(self) -> float:
        return self.used / self.max if self.max else 0.0


async def _memory(client: aredis.Redis) -> tuple[int, int]:
    info = await client.info("memory")
    return int(info["used_memory"]), int(info.get("maxmemory", 0))


def _megabytes(value: int) -> str:
    return f"{value / 2**20:.0f} MB"


async def check_can_start_scan(client: aredis.Redis) -> None:
    """Called by the scans layer before starting a scan: raises :class:`DataMemoryFull`
    (with a message for the user) when the data Redis has no room for a new scan."""
    state, message = await client.hmget(keys.MEMORY_STATUS, ["state", "message"])
    if state == b"full":
        raise DataMemoryFull(_text(message))
    used, maxmemory = await _memory(client)
    if maxmemory and used >= HARD_LIMIT * maxmemory:
        # Scans come faster than the guard looks (once a second): free what is written
        # now rather than refuse a scan that there is room for.
        await trim_written(client, int(0.8 * 0.9 * maxmemory), drop_above=int(0.8 * maxmemory))
        used, maxmemory = await _memory(client)
    if maxmemory and used >= HARD_LIMIT * maxmemory:
        raise DataMemoryFull(
            f"the data Redis is {used / maxmemory:.0%} full ({_megabytes(used)} of "
            f"{_megabytes(maxmemory)}): no new scan can start until the writer has saved and "
            "freed older scans (is the writer running?)"
        )


class MemoryGuard:
    """Watches used_memory vs maxmemory; trims written data first; flags ``full``.

    A task of the server: ``task_group.start_soon(MemoryGuard(urls.data).run)``.
    ``max_bytes`` replaces maxmemory when Redis has none (``maxmemory 0``).
    """

    def __init__(
        self,
        redis: str | aredis.Redis,
        *,
        threshold: float = 0.8,
        interval: float = 1.0,
        max_bytes: int | None = None,
    ) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"memory guard threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.interval = interval
        self.max_bytes = max_bytes
        self._url = redis if isinstance(redis, str) else None
        self._client = None if isinstance(redis, str) else redis
        self.status: MemoryStatus | None = None

    async def _redis(self) -> aredis.Redis:
        if self._client is None:
            assert self._url is not None
            self._client = async_client(self._url)
        return self._client

    async def aclose(self) -> None:
        if self._url is not None and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _usage(self) -> tuple[int, int]:
        used, maxmemory = await _memory(await self._redis())
        return used, maxmemory or (self.max_bytes or 0)

    async def check(self) -> MemoryStatus:
        """One round: measure, trim written data if above the threshold, publish the status."""
        client = await self._redis()
        used, limit = await self._usage()
        trimmed = 0
        if limit and used > self.threshold * limit:
            trimmed = await trim_written(
                client, int(self.threshold * limit * 0.9), drop_above=int(self.threshold * limit)
            )
            used, limit = await self._usage()
        if limit and used > self.threshold * limit:
            state = "full"
            message = (
                f"the data Redis is {used / limit:.0%} full ({_megabytes(used)} of "
                f"{_megabytes(limit)}) with scan data not yet written to disk: new scans are "
                "refused and running ones wait until the writer catches up (is the writer "
                "running?)"
            )
        else:
            state = "ok"
            message = f"data Redis {used / limit:.0%} used" if limit else "no memory limit"
        previous = self.status.state if self.status else "ok"
        if state != previous:
            (log.warning if state == "full" else log.info)("memory guard: %s", message)
        self.status = MemoryStatus(state, used, limit, message, trimmed)
        await client.hset(
            keys.MEMORY_STATUS,
            mapping={
                "state": state,
                "used": used,
                "max": limit,
                "message": message,
                "time": repr(time.time()),
            },
        )
        return self.status

    async def run(self) -> None:
        """Check every ``interval`` until cancelled (a task of the server)."""
        try:
            while True:
                try:
                    await self.check()
                except (OSError, aredis.ConnectionError, aredis.TimeoutError) as exc:
                    log.warning("memory guard: cannot reach the data Redis: %s", exc)
                await anyio.sleep(self.interval)
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose()


async def trim_written(client: aredis.Redis, target: int, *, drop_above: int) -> int:
    """Trim acknowledged data, written scans first, oldest first, until the data Redis uses
    at most ``target`` bytes; if it still uses more than ``drop_above`` bytes, drop written
    scans (their keys) before their TTL, oldest first. Returns the number of entries
    trimmed. Unwritten points are never touched."""
    scans: list[tuple[bool, float, dict[str, Any], dict[Any, Any]]] = []
    async for key in client.scan_iter(match=f"{keys.PREFIX}:scan:*", _type="hash"):
        raw = await client.hget(key, "doc")
        if raw is None:
            continue  # an ack hash, or expired meanwhile
        document = json.loads(raw)
        ack = await client.hgetall(keys.ack_key(document["id"]))
        written = ack.get(b"written") == b"1"
        scans.append((not written, float(document.get("start_time", 0)), document, ack))
    scans.sort(key=lambda item: (item[0], item[1]))
    removed = 0
    for _unwritten, _start, document, ack in scans:
        written = ack.get(b"written") == b"1"
        for name, channel in document["channels"].items():
            if written:
                last = await client.xrevrange(channel["key"], "+", "-", count=1)
                if not last:
                    continue
                minid = last[0][0]  # the seal
            else:
                count = int(ack.get(name.encode(), 0))
                if count <= 0:
                    continue
                holder = await client.xrevrange(channel["key"], keys.entry_id(count), "-", count=1)
                if not holder:
                    continue
                minid = holder[0][0]
            removed += int(await client.xtrim(channel["key"], minid=minid, approximate=False))
        await anyio.lowlevel.checkpoint()
        used, _ = await _memory(client)
        if used <= target:
            break
    if removed:
        log.info("memory guard: trimmed %d written entries", removed)
    # What a written scan keeps (its document, states, seals: some kB) waits for its TTL;
    # under pressure written scans go before it, oldest first (readers then read their
    # files), so that what remains is unwritten data only.
    dropped = 0
    used, _ = await _memory(client)
    for unwritten, _start, document, _ack in scans:
        if used <= drop_above:
            break
        if unwritten:
            continue
        await client.delete(*scan_keys(document))
        dropped += 1
        if dropped % 20 == 0:
            used, _ = await _memory(client)
    if dropped:
        log.info("memory guard: dropped %d written scans before their TTL", dropped)
    return removed
