"""The memory policy of the data Redis: TTLs, the writer's "written" mark, the memory guard.

Nothing unwritten is ever dropped: the guard trims only what the writer acknowledged; when
Redis holds nothing else, it says so (``blissng:memory`` state ``full``) and new scans refuse
to start (:func:`check_can_start_scan`).
"""

from __future__ import annotations

import dataclasses

import redis.asyncio as aredis


async def mark_scan_written(client: aredis.Redis, scan_id: str, *, file: str | None = None) -> None:
    """The writer calls this when a scan is entirely on disk: sets ``written`` and starts the
    scan's TTL (``retention.written_ttl`` from its document)."""
    raise NotImplementedError


async def acknowledge(client: aredis.Redis, scan_id: str, counts: dict[str, int]) -> None:
    """The writer calls this after flushing: ``{channel: points safely on disk}``."""
    raise NotImplementedError


async def check_can_start_scan(client: aredis.Redis) -> None:
    """Called by the scans layer before starting a scan: raises :class:`DataMemoryFull`."""
    raise NotImplementedError


@dataclasses.dataclass
class MemoryStatus:
    state: str
    used: int
    max: int
    message: str


class MemoryGuard:
    """Watches used_memory vs maxmemory; trims written data; flags ``full``."""

    def __init__(
        self, redis: str | aredis.Redis, *, threshold: float = 0.8, interval: float = 1.0
    ) -> None:
        raise NotImplementedError

    async def check(self) -> MemoryStatus:
        """One round: measure, trim written data if above the threshold, publish the status."""
        raise NotImplementedError

    async def run(self) -> None:
        """Check every ``interval`` until cancelled (a task of the server)."""
        raise NotImplementedError
