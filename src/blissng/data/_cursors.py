"""Reading scans forward as points arrive: :class:`ChannelCursor` and :class:`ScanCursor`.

The live side of the reader (``_views`` is the random-access side: the store, the scans and
their channels): one follower per channel takes XREAD replies into points, and what Redis no
longer has from the scan's file, so that a cursor never misses a point nor returns one twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import numpy as np

from blissng.redisdb import text as _text

from . import _entries
from ._entries import Seal, entry_id, entry_index
from ._errors import DataGone, EndOfData

if TYPE_CHECKING:
    from ._views import ChannelView, ScanView

# The longest a single blocking XREAD waits; longer waits loop (so cancellation and dropped
# connections are noticed).
BLOCK_MS = 1000


class _Follower:
    """Where one channel's forward reading stands: takes stream entries (and, for what Redis
    no longer has, the file) into new points, kept until the cursor returns them."""

    def __init__(self, channel: ChannelView, start: int) -> None:
        self.channel = channel
        self.position = start
        """The index of the next point to take."""
        self.last_id = "0-0"
        """The ID of the last entry taken: the next XREAD starts after it."""
        self.end: int | None = None
        self.located = start == 0
        self.parts: list[np.ndarray] = []
        self.gone: DataGone | None = None
        """Points missing from Redis and from the file: raised by the next read."""

    async def locate(self) -> None:
        """Start the XREAD at the entry holding ``position`` (not at the stream's start)."""
        if self.located:
            return
        holder = await self.channel.scan.store.redis.xrevrange(
            self.channel.key, entry_id(self.position), "-", count=1
        )
        if holder:
            self.last_id = _entries.before(entry_index(holder[0][0]))
        self.located = True

    @property
    def finished(self) -> bool:
        return self.end is not None and self.position >= self.end

    @property
    def waiting(self) -> bool:
        """Nothing to return yet, more to come."""
        return not self.finished and not self.parts and self.gone is None

    def collect(self) -> np.ndarray | None:
        """The points taken since the last call, in one array (None if none)."""
        if not self.parts:
            return None
        parts, self.parts = self.parts, []
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def raise_gone(self) -> None:
        """Raise the pending :class:`DataGone` once (the read after it tries again)."""
        gone, self.gone = self.gone, None
        if gone is not None:
            raise gone

    async def take(self, replies: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Entries from XREAD, in order. Points before an entry that Redis no longer has
        (trimmed, up to the seal itself) come from the file; when the file does not have
        them either, the entries from there on are left for the next read."""
        for raw_id, fields in replies:
            entry = _entries.parse(raw_id, fields)
            upto = entry.length if isinstance(entry, Seal) else entry.index
            if upto > self.position and not await self._from_file(upto):
                return
            self.last_id = _text(raw_id)
            if isinstance(entry, Seal):
                self.end = entry.length
            elif entry.stop > self.position:
                self.parts.append(self.channel.points(entry)[self.position - entry.index :])
                self.position = entry.stop

    async def rest_from_file(self) -> None:
        """The scan left Redis: the rest of the channel comes from its file, or is gone."""
        end = await self.channel.file_length()
        if end is None:
            self.gone = DataGone(
                f"{self.channel.where()}: expired from Redis and no file has it "
                f"(read up to point {self.position})"
            )
        elif await self._from_file(end):
            self.end = end

    async def _from_file(self, stop: int) -> bool:
        """Take the points up to ``stop`` from the file; False (and ``gone``) if it has not
        got them."""
        if stop <= self.position:
            return True
        data = await self.channel.from_fallback(self.position, stop)
        if data is None:
            self.gone = DataGone(
                f"{self.channel.where()}: points {self.position}..{stop - 1} were trimmed "
                "from Redis before being read, and no file has them"
            )
            return False
        self.parts.append(data)
        self.position = stop
        return True


async def _pull(
    scan: ScanView,
    followers: Sequence[_Follower],
    timeout: float | None,
    count: int | None = None,
) -> None:
    """Bring new points into ``followers``: returns once one of them has points or an error,
    every one is finished, or ``timeout`` passed (None: no limit). ``count``: at most that many
    stream entries (batches) per channel in one XREAD (a late reader of a long scan catches up
    in bounded steps).

    Every pass awaits something that yields to the event loop (a checkpoint, then a blocking
    XREAD or a file read), so no reader, whatever it finds in Redis, can starve the loop.
    """
    for follower in followers:
        await follower.locate()
    store = scan.store
    by_key = {f.channel.key.encode(): f for f in followers}
    deadline = None if timeout is None else anyio.current_time() + timeout
    while True:
        await anyio.lowlevel.checkpoint()
        waiting = [f for f in followers if f.waiting]
        if not waiting or any(f.parts or f.gone for f in followers):
            return  # one has points or an error, or all are finished
        if scan.expired:
            for follower in waiting:
                await follower.rest_from_file()
            continue
        streams = {f.channel.key: f.last_id for f in waiting}
        remaining = None if deadline is None else deadline - anyio.current_time()
        last_look = remaining is not None and remaining <= 0
        block = None if last_look else min(BLOCK_MS, max(1, int((remaining or 1e9) * 1000)))
        found = await store.xread(streams, count=count, block=block)
        for key, replies in found:
            await by_key[key].take(replies)
        if found or last_look:
            if last_look:
                return
            continue
        if store.redis_away or await store.redis.exists(scan.key):
            scan.missing_since = None
            continue
        # The scan is not in Redis: expired (its file then holds it whole), or lost in a
        # restart its publisher has not repaired yet (wait, within reconnect_timeout).
        if all([await f.channel.file_length() is not None for f in waiting]):
            scan.expired = True
            continue
        now = anyio.current_time()
        if scan.missing_since is None:
            scan.missing_since = now
        if now - scan.missing_since > store.reconnect_timeout:
            for follower in waiting:
                await follower.rest_from_file()
            return


class ChannelCursor:
    """Reads a channel forward from ``start``, as points arrive.

    ``await cursor.read(timeout)`` returns the new points (at least one), or an empty array
    when ``timeout`` passed without any; raises :class:`EndOfData` once everything up to the
    seal was returned, :class:`DataGone` for points neither Redis nor the file has (the read
    after it tries again). ``async for batch in cursor`` iterates until the seal.
    """

    def __init__(self, channel: ChannelView, start: int = 0) -> None:
        self.channel = channel
        self._follower = _Follower(channel, start)

    @property
    def position(self) -> int:
        """The index of the next point to return."""
        return self._follower.position - sum(len(p) for p in self._follower.parts)

    async def read(self, timeout: float | None = None, count: int | None = None) -> np.ndarray:
        """New points (``count``: from at most that many stream entries)."""
        follower = self._follower
        if follower.finished and not follower.parts:
            raise EndOfData(f"{self.channel.where()} ended at {follower.end} points; all were read")
        await _pull(self.channel.scan, [follower], timeout, count)
        data = follower.collect()
        if data is not None:
            return data
        follower.raise_gone()
        if follower.finished:
            raise EndOfData(f"{self.channel.where()} ended at {follower.end} points; all were read")
        return self.channel.empty()

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[np.ndarray]:
        while True:
            try:
                yield await self.read()
            except EndOfData:
                return


class ScanCursor:
    """Reads several channels of a scan forward with one XREAD.

    ``await cursor.read(timeout)`` returns ``{name: new points}`` for the channels that got
    some (an empty dict after ``timeout``); :class:`EndOfData` once every channel is read to
    its seal; :class:`DataGone` for points neither Redis nor the file has (the read after it
    tries again). ``async for update in cursor`` iterates until then.
    """

    def __init__(self, scan: ScanView, channels: Sequence[ChannelView]) -> None:
        self.scan = scan
        self._followers = [_Follower(ch, 0) for ch in channels]

    @property
    def finished(self) -> bool:
        """Every channel reached its seal and was read to it."""
        return all(f.finished and not f.parts for f in self._followers)

    @property
    def positions(self) -> dict[str, int]:
        return {f.channel.name: f.position for f in self._followers}

    async def read(
        self, timeout: float | None = None, count: int | None = None
    ) -> dict[str, np.ndarray]:
        """New points per channel (``count``: from at most that many stream entries each)."""
        if self.finished:
            raise EndOfData(f"every channel of scan {self.scan.id} was read to its end")
        await _pull(self.scan, self._followers, timeout, count)
        update: dict[str, np.ndarray] = {}
        for follower in self._followers:
            data = follower.collect()
            if data is not None:
                update[follower.channel.name] = data
        if not update:
            for follower in self._followers:
                follower.raise_gone()
        return update

    def __aiter__(self) -> AsyncIterator[dict[str, np.ndarray]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, np.ndarray]]:
        while not self.finished:
            update = await self.read()
            if update:
                yield update
