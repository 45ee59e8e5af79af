"""Reading scans back: DataStore -> ScanView -> ChannelView -> ChannelCursor.

Async API (one Redis client per event loop). ``blissng.data.sync`` wraps it for scripts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any

import numpy as np
import redis.asyncio as aredis


class DataStore:
    """The scans in one data Redis. ``DataStore(url)`` or ``DataStore(client)``."""

    def __init__(self, redis: str | aredis.Redis) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> DataStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def scans(self, session: str | None = None, count: int = 100) -> list[ScanView]:
        """Recent scans still in Redis, oldest first (of a session, or all)."""
        raise NotImplementedError

    async def last_scan(self, session: str | None = None) -> ScanView:
        """The most recent scan; :class:`ScanNotFound` when there is none."""
        raise NotImplementedError

    async def get_scan(self, scan_id: str) -> ScanView:
        """A scan by id; :class:`ScanNotFound` (a DataGone) when absent and no fallback has it."""
        raise NotImplementedError

    def follow(
        self, session: str | None = None, *, since: str = "$", block: float = 1.0
    ) -> AsyncIterator[ScanView]:
        """New scans as they are created (``since="0"`` also replays the known ones)."""
        raise NotImplementedError


class ScanView:
    """A scan as readers see it (not the live ``Scan`` of the scans layer)."""

    id: str
    document: dict[str, Any]

    @property
    def session(self) -> str:
        raise NotImplementedError

    @property
    def number(self) -> int:
        raise NotImplementedError

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def info(self) -> dict[str, Any]:
        """The whole scan document."""
        raise NotImplementedError

    @property
    def state(self) -> str:
        """The state when last refreshed (``await refresh()``)."""
        raise NotImplementedError

    @property
    def end_reason(self) -> str | None:
        raise NotImplementedError

    @property
    def error(self) -> str | None:
        raise NotImplementedError

    async def refresh(self) -> str:
        """Read the current state from Redis."""
        raise NotImplementedError

    async def wait_state(self, state: str, timeout: float | None = None) -> str:
        """Until the scan reaches ``state`` (or a later one); TimeoutError after ``timeout``."""
        raise NotImplementedError

    @property
    def channels(self) -> Mapping[str, ChannelView]:
        raise NotImplementedError

    def cursor(self, channels: Sequence[str] | None = None) -> ScanCursor:
        """New data of several channels as it arrives (one XREAD for all)."""
        raise NotImplementedError


class ChannelView:
    """One channel of a scan: random access by index and live cursors."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    async def length(self) -> int:
        """Points published so far (the total once sealed)."""
        raise NotImplementedError

    async def sealed(self) -> bool:
        raise NotImplementedError

    def __getitem__(self, item: int | slice) -> Awaitable[np.ndarray]:
        """``await ch[i]`` -> one point; ``await ch[a:b]`` -> ``(n, *shape)`` array.

        Errors: :class:`NotYetAvailable`, :class:`DataGone`, :class:`EndOfData`.
        """
        raise NotImplementedError

    async def get(self, start: int, stop: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def cursor(self, start: int = 0) -> ChannelCursor:
        raise NotImplementedError


class ChannelCursor:
    """Reads a channel forward from ``start``, as points arrive."""

    position: int

    async def read(self, timeout: float | None = None, max_points: int | None = None) -> np.ndarray:
        """New points (at least one) or an empty array after ``timeout``.

        :class:`EndOfData` once the seal is reached and everything before it was returned.
        """
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        raise NotImplementedError


class ScanCursor:
    """Reads several channels of a scan forward; ``read`` returns ``{name: new points}``."""

    async def read(self, timeout: float | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """Every channel reached its seal."""
        raise NotImplementedError
