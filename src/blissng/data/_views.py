"""Reading scans back: DataStore -> ScanView -> ChannelView -> ChannelCursor / ScanCursor.

The random-access side: the store, its scans and their channels, read by index and slice
(``_cursors`` reads forward as points arrive). Async API (one Redis client per event loop);
``SyncDataStore`` wraps it for scripts. It
follows docs/data-model.md and nothing else, like a reader in any other language would.

Errors say which of three things happened: :class:`NotYetAvailable` (may still come),
:class:`DataGone` (was there, expired or trimmed, and no registered file fallback has it) and
:class:`EndOfData` (the stream is sealed before that index: will never come).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from blissng.redisdb import async_client
from blissng.redisdb import text as _text

from . import _entries
from . import _keys as keys
from ._cursors import BLOCK_MS, ChannelCursor, ScanCursor
from ._document import STATES, description_dtype, find_channel
from ._entries import Batch, Seal, entry_id, entry_index
from ._errors import DataError, DataGone, EndOfData, NotYetAvailable, ScanNotFound
from ._fallback_registry import fallbacks


class DataStore:
    """The scans in one data Redis. ``DataStore(url)`` or ``DataStore(client)``.

    ``async with DataStore(url) as store:`` closes its client at the end.
    """

    def __init__(self, redis: str | aredis.Redis, *, reconnect_timeout: float = 30.0) -> None:
        self.reconnect_timeout = reconnect_timeout
        """Followers (cursors, ``follow``) ride out a Redis restart this long."""
        self._away_since: float | None = None
        # Typed loosely: redis-py's stream replies are unions of every decoding mode.
        self.redis: Any
        if isinstance(redis, str):
            self.redis = async_client(redis, socket_timeout=BLOCK_MS / 1000 + 10)
            self._owned = True
        else:
            self.redis = redis
            self._owned = False

    async def aclose(self) -> None:
        if self._owned:
            await self.redis.aclose()

    async def __aenter__(self) -> DataStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def xread(
        self, streams: dict[str, str], count: int | None = None, block: int | None = BLOCK_MS
    ) -> Any:
        """One XREAD (blocking up to ``block`` ms; ``None``: a look without blocking); an
        empty reply while Redis is away (a restart, a blip), a :class:`DataError` once it
        stayed away longer than ``reconnect_timeout``."""
        try:
            found = await self.redis.xread(streams, block=block, count=count)
        except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
            now = anyio.current_time()
            if self._away_since is None:
                self._away_since = now
            if now - self._away_since > self.reconnect_timeout:
                raise DataError(
                    f"the data Redis has been unreachable for {now - self._away_since:.0f} s "
                    f"(reconnect_timeout={self.reconnect_timeout} s): {exc}"
                ) from None
            await anyio.sleep(0.1)
            return []
        self._away_since = None
        return found or []

    @property
    def redis_away(self) -> bool:
        """The last XREAD found the data Redis unreachable (followers wait for it)."""
        return self._away_since is not None

    async def _view(self, scan_id: str) -> ScanView | None:
        fields = await self.redis.hgetall(keys.scan_key(scan_id))
        if not fields or b"doc" not in fields:
            return None
        return ScanView(self, fields)

    async def scans(self, session: str | None = None, count: int = 100) -> list[ScanView]:
        """Up to ``count`` recent scans still in Redis, oldest first (of a session, or all)."""
        found: list[ScanView] = []
        async for scan_id in self._announced(session):
            view = await self._view(scan_id)
            if view is not None:
                found.append(view)
                if len(found) >= count:
                    break
        found.reverse()
        return found

    async def _announced(self, session: str | None) -> AsyncIterator[str]:
        """Scan ids from the newest announcement back."""
        upper = "+"
        while True:
            entries = await self.redis.xrevrange(keys.SCANS_STREAM, upper, "-", count=100)
            for _entry_id, fields in entries:
                if session is None or fields.get(b"session") == session.encode():
                    yield _text(fields[b"id"])
            if len(entries) < 100:
                return
            upper = "(" + _text(entries[-1][0])

    async def last_scan(self, session: str | None = None) -> ScanView:
        """The most recent scan whose data can still be read: in Redis, or (expired) in its
        file through a registered fallback, so that a plot opened after a scan's TTL still
        shows the session's last scan; :class:`ScanNotFound` when there is none."""
        async for scan_id in self._announced(session):
            view = await self._readable(scan_id)
            if view is not None:
                return view
        where = f"of session {session!r} " if session else ""
        raise ScanNotFound(f"no scan {where}in the data Redis or in a file")

    async def _readable(self, scan_id: str) -> ScanView | None:
        """The scan from Redis, else from a registered file fallback, else None."""
        view = await self._view(scan_id)
        if view is not None:
            return view
        for fallback in fallbacks():
            document = await fallback.scan_document(scan_id)
            if document is not None:
                return ScanView.from_document(self, dict(document))
        return None

    async def get_scan(self, scan_id: str) -> ScanView:
        """A scan by id; from a registered file fallback when it expired from Redis;
        :class:`ScanNotFound` (a :class:`DataGone`) otherwise."""
        prefix = keys.scan_key("")
        if scan_id.startswith(prefix):  # the scan's key works too
            scan_id = scan_id[len(prefix) :]
        view = await self._readable(scan_id)
        if view is not None:
            return view
        raise ScanNotFound(
            f"scan {scan_id!r} is not in the data Redis (expired, or never published) and no "
            "file reader knows it"
        )

    async def follow(
        self, session: str | None = None, *, since: str = "$"
    ) -> AsyncIterator[ScanView]:
        """New scans as they are created, forever (``since="0"`` replays the known ones).

        ``async for scan in store.follow("demo"): ...``
        """
        last = since
        if since == "$":
            newest = await self.redis.xrevrange(keys.SCANS_STREAM, "+", "-", count=1)
            last = _text(newest[0][0]) if newest else "0-0"
        while True:
            found = await self.xread({keys.SCANS_STREAM: last}, count=100)
            for _key, entries in found:
                for raw_id, fields in entries:
                    last = _text(raw_id)
                    if session is not None and fields.get(b"session") != session.encode():
                        continue
                    view = await self._view(_text(fields[b"id"]))
                    if view is not None:
                        yield view


class ScanView:
    """A scan as readers see it (the live ``Scan`` of the scans layer is another thing)."""

    def __init__(self, store: DataStore, fields: Mapping[bytes, bytes]) -> None:
        self.store = store
        self.document: dict[str, Any] = json.loads(fields[b"doc"])
        self.id: str = self.document["id"]
        self._fields = {_text(k): _text(v) for k, v in fields.items() if k != b"doc"}
        self.expired = False
        self.missing_since: float | None = None  # when a follower found the hash gone
        self._channels = {
            name: ChannelView(self, description)
            for name, description in self.document["channels"].items()
        }

    @classmethod
    def from_document(cls, store: DataStore, document: dict[str, Any]) -> ScanView:
        """A scan known only from its file (expired from Redis)."""
        view = cls(store, {b"doc": json.dumps(document).encode(), b"state": b"closed"})
        view.expired = True
        return view

    def __repr__(self) -> str:
        return f"<ScanView {self.id} {self.name} #{self.number} {self.state}>"

    @property
    def key(self) -> str:
        return keys.scan_key(self.id)

    @property
    def session(self) -> str:
        return str(self.document["session"])

    @property
    def number(self) -> int:
        return int(self.document["number"])

    @property
    def name(self) -> str:
        return str(self.document["name"])

    @property
    def info(self) -> dict[str, Any]:
        """The whole scan document (docs/data-model.md)."""
        return self.document

    @property
    def state(self) -> str:
        """The state when last read (``await refresh()`` reads it again)."""
        return self._fields.get("state", "created")

    @property
    def end_reason(self) -> str | None:
        return self._fields.get("end_reason") or None

    @property
    def error(self) -> str | None:
        return self._fields.get("error") or None

    @property
    def start_time(self) -> float:
        return float(self.document["start_time"])

    @property
    def end_time(self) -> float | None:
        value = self._fields.get("end_time")
        return float(value) if value else None

    async def refresh(self) -> str:
        """Read the current state from Redis (unchanged once the scan expired)."""
        fields = await self.store.redis.hgetall(self.key)
        if not fields:
            self.expired = True
        else:
            self._fields = {_text(k): _text(v) for k, v in fields.items() if k != b"doc"}
        return self.state

    async def wait_state(self, state: str, timeout: float | None = None) -> str:
        """Until the scan reaches ``state`` or a later one; returns the state reached.

        ``TimeoutError`` after ``timeout`` s; :class:`DataGone` if the scan expires first.
        """
        if state not in STATES:
            raise ValueError(f"unknown scan state {state!r}; states are {', '.join(STATES)}")
        wanted = STATES.index(state)
        if self.expired and STATES.index(self.state) >= wanted:
            return self.state  # read from its file: closed, its state stream gone
        last = "0-0"
        with anyio.fail_after(timeout):
            while True:
                found = await self.store.xread({keys.state_key(self.id): last})
                for _key, entries in found:
                    for entry_id, fields in entries:
                        last = _text(entry_id)
                        reached = _text(fields[b"state"])
                        if STATES.index(reached) >= wanted:
                            await self.refresh()
                            return reached
                if self.store.redis_away:
                    continue  # Redis is away: wait for it (up to reconnect_timeout)
                if not found and not await self.store.redis.exists(self.key):
                    self.expired = True
                    raise DataGone(f"scan {self.id} expired from Redis before reaching {state}")

    @property
    def channels(self) -> Mapping[str, ChannelView]:
        return self._channels

    def __getitem__(self, name: str) -> ChannelView:
        """A channel by its full name (``sim1:diode``), its label (``diode``) or its motor's
        name (``m1``), as the scan document maps them."""
        if name in self._channels:
            return self._channels[name]
        try:
            return self._channels[find_channel(self.info, name)]
        except KeyError as exc:
            raise KeyError(f"scan {self.id}: {exc.args[0]}") from None

    def cursor(self, channels: Sequence[str] | None = None) -> ScanCursor:
        """New data of several channels as it arrives (one XREAD for all)."""
        names = list(channels) if channels is not None else list(self._channels)
        return ScanCursor(self, [self[name] for name in names])


class ChannelView:
    """One channel of a scan: random access by index and live cursors.

    Every read goes to Redis first and to the scan's file (a registered
    :class:`~blissng.data.DataFallback`) for what Redis no longer has: points trimmed from
    the start of the stream (up to its seal, what the memory guard does to written scans),
    and everything once the scan's keys expired.
    """

    def __init__(self, scan: ScanView, description: Mapping[str, Any]) -> None:
        self.scan = scan
        self.description = dict(description)
        self.name: str = description["name"]
        self.key: str = description["key"]
        self.dtype: np.dtype[Any] = description_dtype(description)
        self.shape: tuple[int, ...] = tuple(description.get("shape") or ())
        self.unit: str | None = description.get("unit")
        self.device: str | None = description.get("device")
        self.kind: str = description.get("kind", "data")

    def __repr__(self) -> str:
        return f"<ChannelView {self.scan.id}:{self.name} {self.dtype} {self.shape}>"

    def points(self, batch: Batch) -> np.ndarray:
        """The points of one stream entry, as an ``(n, *shape)`` array."""
        return _entries.points(batch, self.dtype, self.shape)

    def empty(self) -> np.ndarray:
        """No points: a ``(0, *shape)`` array of the channel's dtype."""
        return np.zeros((0, *self.shape), self.dtype)

    def where(self) -> str:
        """The channel and its scan, as error messages name them."""
        return f"channel {self.name} of scan {self.scan.id}"

    def _never(self, index: int, end: int) -> EndOfData:
        return EndOfData(f"{self.where()} has {end} points; index {index} will never come")

    async def _last(self) -> Batch | Seal | None:
        """The stream's last entry; None when the stream has none (not yet, or expired)."""
        last = await self.scan.store.redis.xrevrange(self.key, "+", "-", count=1)
        return _entries.parse(*last[0]) if last else None

    async def _scan_gone(self) -> bool:
        return self.scan.expired or not await self.scan.store.redis.exists(self.scan.key)

    async def file_length(self) -> int | None:
        """The channel's length in the scan's file once the file holds the whole scan."""
        for fallback in fallbacks():
            length = await fallback.length(self.scan.document, self.name)
            if length is not None:
                return length
        return None

    async def _final_length(self) -> int | None:
        """The length no point will be added to: the seal's, or the file's once the scan
        left Redis; None while the stream is open (or nobody knows)."""
        last = await self._last()
        if isinstance(last, Seal):
            return last.length
        if last is None and await self._scan_gone():
            return await self.file_length()
        return None

    async def length(self) -> int:
        """Points published so far (the total once sealed; the file's once expired)."""
        last = await self._last()
        if isinstance(last, Seal):
            return last.length
        if isinstance(last, Batch):
            return last.stop
        if await self._scan_gone():
            length = await self.file_length()
            if length is None:
                raise DataGone(f"{self.where()}: expired from Redis and no file has it")
            return length
        return 0

    async def sealed(self) -> bool:
        """No point will be added (a scan leaves Redis only once closed)."""
        last = await self._last()
        if last is None:
            return await self._scan_gone()
        return isinstance(last, Seal)

    def __getitem__(self, item: int | slice) -> Awaitable[np.ndarray]:
        """``await ch[i]`` -> one point; ``await ch[a:b]`` -> an ``(n, *shape)`` array.

        Errors: :class:`NotYetAvailable`, :class:`DataGone`, :class:`EndOfData`.
        """
        if isinstance(item, slice):
            return self._slice(item)
        if isinstance(item, int | np.integer):
            return self._point(int(item))
        raise TypeError(f"channel {self.name}: index with an int or a slice, not {item!r}")

    async def _point(self, index: int) -> np.ndarray:
        if index < 0:
            index += await self.length()
            if index < 0:
                raise IndexError(f"channel {self.name}: index out of range")
        return (await self.get(index, index + 1))[0]

    async def _slice(self, item: slice) -> np.ndarray:
        start, stop, step = item.start, item.stop, item.step
        if (start is not None and start < 0) or (stop is not None and stop < 0) or stop is None:
            length = await self.length()
            start, stop, _ = slice(start, stop).indices(length)
        data = await self.get(start or 0, stop)
        return data[::step] if step not in (None, 1) else data

    async def get(self, start: int, stop: int | None = None) -> np.ndarray:
        """Points ``start .. stop-1`` (to the current length when ``stop`` is None).

        On a sealed stream, a range past the end is cut at the end (like a list slice), and a
        range that starts at or past the end raises :class:`EndOfData`. On an open stream, a
        range past what was published raises :class:`NotYetAvailable`. What Redis no longer
        has comes from the file; :class:`DataGone` when no file has it either.
        """
        if start < 0:
            raise IndexError(f"channel {self.name}: negative start {start}")
        if stop is None:
            stop = await self.length()
        if stop <= start:
            return self.empty()
        try:
            return await self._from_redis(start, stop)
        except DataGone as gone:
            end = await self._final_length()
            if end is not None:
                if start >= end:
                    raise self._never(start, end) from None
                stop = min(stop, end)
            data = await self.from_fallback(start, stop)
            if data is None:
                raise gone from None
            return data

    async def _from_redis(self, start: int, stop: int) -> np.ndarray:
        redis = self.scan.store.redis
        holder = await redis.xrevrange(self.key, entry_id(start), "-", count=1)
        if not holder:
            return await self._nothing_at(start)
        replies = await redis.xrange(self.key, holder[0][0], entry_id(stop - 1))
        parts: list[np.ndarray] = []
        position = start
        for raw_id, fields in replies:
            entry = _entries.parse(raw_id, fields)
            if isinstance(entry, Seal):
                if position >= entry.length and not parts:
                    raise self._never(position, entry.length)
                break
            if entry.index > position:
                raise DataGone(f"{self.where()}: points from {position} were trimmed from Redis")
            parts.append(self.points(entry)[position - entry.index : stop - entry.index])
            position = entry.stop
            if position >= stop:
                break
        if position < stop:
            last = await self._last()
            if isinstance(last, Seal):
                if position >= last.length and not parts:
                    raise self._never(position, last.length)
            else:
                raise NotYetAvailable(f"{self.where()}: point {position} is not published yet")
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    async def _nothing_at(self, start: int) -> np.ndarray:
        """No entry at or before ``start``: trimmed, expired, or not published yet."""
        redis = self.scan.store.redis
        first = await redis.xrange(self.key, "-", "+", count=1)
        if first:
            raise DataGone(
                f"{self.where()}: point {start} was trimmed from Redis (it now starts at "
                f"{entry_index(first[0][0])})"
            )
        if await self._scan_gone():
            raise DataGone(f"{self.where()}: expired from Redis")
        raise NotYetAvailable(f"{self.where()}: point {start} is not published yet")

    async def from_fallback(self, start: int, stop: int) -> np.ndarray | None:
        """Points ``start .. stop-1`` from the scan's file (a registered fallback), or None."""
        for fallback in fallbacks():
            data = await fallback.read(self.scan.document, self.name, start, stop)
            if data is not None:
                return np.asarray(data, dtype=self.dtype).reshape((-1, *self.shape))
        return None

    def cursor(self, start: int = 0) -> ChannelCursor:
        """Reads forward from ``start`` as points arrive."""
        return ChannelCursor(self, start)
