"""Reading scans back: DataStore -> ScanView -> ChannelView -> ChannelCursor / ScanCursor.

Async API (one Redis client per event loop); ``blissng.data.sync`` wraps it for scripts. It
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
import numpy as np
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from blissng.redisdb import async_client
from blissng.redisdb import text as _text

from . import keys
from .document import STATES, description_dtype
from .errors import DataError, DataGone, EndOfData, NotYetAvailable, ScanNotFound
from .fallback import fallbacks

# The longest a single blocking XREAD waits; longer waits loop (so cancellation and dropped
# connections are noticed).
_BLOCK_MS = 1000


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
            self.redis = async_client(redis, socket_timeout=_BLOCK_MS / 1000 + 10)
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

    async def _xread_or_wait(self, streams: dict[str, str], count: int | None = None) -> Any:
        """One blocking XREAD; an empty reply while Redis is away (a restart, a blip), a
        :class:`DataError` once it stayed away longer than ``reconnect_timeout``."""
        try:
            found = await self.redis.xread(streams, block=_BLOCK_MS, count=count)
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
        return found

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
        """The most recent scan still in Redis; :class:`ScanNotFound` when there is none."""
        async for scan_id in self._announced(session):
            view = await self._view(scan_id)
            if view is not None:
                return view
        where = f"of session {session!r} " if session else ""
        raise ScanNotFound(f"no scan {where}in the data Redis")

    async def get_scan(self, scan_id: str) -> ScanView:
        """A scan by id; from a registered file fallback when it expired from Redis;
        :class:`ScanNotFound` (a :class:`DataGone`) otherwise."""
        prefix = keys.scan_key("")
        if scan_id.startswith(prefix):  # the scan's key works too
            scan_id = scan_id[len(prefix) :]
        view = await self._view(scan_id)
        if view is not None:
            return view
        for fallback in fallbacks():
            document = await fallback.scan_document(scan_id)
            if document is not None:
                return ScanView.from_document(self, dict(document))
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
            found = await self._xread_or_wait({keys.SCANS_STREAM: last}, count=100)
            for _key, entries in found:
                for entry_id, fields in entries:
                    last = _text(entry_id)
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
        last = "0-0"
        with anyio.fail_after(timeout):
            while True:
                found = await self.store._xread_or_wait({keys.state_key(self.id): last})
                for _key, entries in found:
                    for entry_id, fields in entries:
                        last = _text(entry_id)
                        reached = _text(fields[b"state"])
                        if STATES.index(reached) >= wanted:
                            await self.refresh()
                            return reached
                if self.store._away_since is not None:
                    continue  # Redis is away: wait for it (up to reconnect_timeout)
                if not found and not await self.store.redis.exists(self.key):
                    self.expired = True
                    raise DataGone(f"scan {self.id} expired from Redis before reaching {state}")

    @property
    def channels(self) -> Mapping[str, ChannelView]:
        return self._channels

    def __getitem__(self, name: str) -> ChannelView:
        try:
            return self._channels[name]
        except KeyError:
            raise KeyError(
                f"scan {self.id} has no channel {name!r}; it has {', '.join(self._channels)}"
            ) from None

    def cursor(self, channels: Sequence[str] | None = None) -> ScanCursor:
        """New data of several channels as it arrives (one XREAD for all)."""
        names = list(channels) if channels is not None else list(self._channels)
        return ScanCursor(self, [self[name] for name in names])


class ChannelView:
    """One channel of a scan: random access by index and live cursors."""

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

    def decode(self, fields: Mapping[bytes, bytes]) -> np.ndarray:
        n = int(fields[b"n"])
        return np.frombuffer(fields[b"d"], self.dtype).reshape((n, *self.shape))

    def _empty(self) -> np.ndarray:
        return np.zeros((0, *self.shape), self.dtype)

    async def _last_entry(self) -> tuple[int, bool] | None:
        """(length, sealed) from the last entry; None when the stream has none."""
        last = await self.scan.store.redis.xrevrange(self.key, "+", "-", count=1)
        if not last:
            return None
        entry_id, fields = last[0]
        if b"end" in fields:
            return int(fields[b"end"]), True
        return keys.entry_index(entry_id) + int(fields[b"n"]), False

    async def _scan_gone(self) -> bool:
        return self.scan.expired or not await self.scan.store.redis.exists(self.scan.key)

    async def length(self) -> int:
        """Points published so far (the total once sealed)."""
        last = await self._last_entry()
        if last is not None:
            return last[0]
        if await self._scan_gone():
            raise DataGone(f"channel {self.name} of scan {self.scan.id}: expired from Redis")
        return 0

    async def sealed(self) -> bool:
        last = await self._last_entry()
        return bool(last and last[1])

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
        range past what was published raises :class:`NotYetAvailable`.
        """
        if start < 0:
            raise IndexError(f"channel {self.name}: negative start {start}")
        if stop is None:
            stop = await self.length()
        if stop <= start:
            return self._empty()
        try:
            return await self._from_redis(start, stop)
        except DataGone as gone:
            data = await self._from_fallback(start, stop)
            if data is None:
                raise gone from None
            return data

    async def _from_redis(self, start: int, stop: int) -> np.ndarray:
        redis = self.scan.store.redis
        holder = await redis.xrevrange(self.key, keys.entry_id(start), "-", count=1)
        if not holder:
            return await self._nothing_at(start)
        entries = await redis.xrange(self.key, holder[0][0], keys.entry_id(stop - 1))
        parts: list[np.ndarray] = []
        position = start
        for entry_id, fields in entries:
            index = keys.entry_index(entry_id)
            if b"end" in fields:
                end = int(fields[b"end"])
                if position >= end and not parts:
                    raise EndOfData(
                        f"channel {self.name} of scan {self.scan.id} has {end} points; "
                        f"index {position} will never come"
                    )
                break
            if index > position:
                raise DataGone(
                    f"channel {self.name} of scan {self.scan.id}: points from {position} were "
                    "trimmed from Redis"
                )
            batch = self.decode(fields)
            parts.append(batch[position - index : stop - index])
            position = index + len(batch)
            if position >= stop:
                break
        if position < stop:
            last = await self._last_entry()
            if last is not None and last[1]:
                if position >= last[0] and not parts:
                    raise EndOfData(
                        f"channel {self.name} of scan {self.scan.id} has {last[0]} points; "
                        f"index {position} will never come"
                    )
            else:
                raise NotYetAvailable(
                    f"channel {self.name} of scan {self.scan.id}: point {position} is not "
                    "published yet"
                )
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    async def _nothing_at(self, start: int) -> np.ndarray:
        """No entry at or before ``start``: trimmed, expired, or not published yet."""
        redis = self.scan.store.redis
        first = await redis.xrange(self.key, "-", "+", count=1)
        if first:
            raise DataGone(
                f"channel {self.name} of scan {self.scan.id}: point {start} was trimmed from "
                f"Redis (it now starts at {keys.entry_index(first[0][0])})"
            )
        if await self._scan_gone():
            raise DataGone(f"channel {self.name} of scan {self.scan.id}: expired from Redis")
        raise NotYetAvailable(
            f"channel {self.name} of scan {self.scan.id}: point {start} is not published yet"
        )

    async def _from_fallback(self, start: int, stop: int) -> np.ndarray | None:
        for fallback in fallbacks():
            data = await fallback.read(self.scan.document, self.name, start, stop)
            if data is not None:
                return np.asarray(data, dtype=self.dtype).reshape((-1, *self.shape))
        return None

    def cursor(self, start: int = 0) -> ChannelCursor:
        """Reads forward from ``start`` as points arrive."""
        return ChannelCursor(self, start)


class _Follower:
    """Where one channel's forward reading stands: turns stream entries into new points."""

    def __init__(self, channel: ChannelView, start: int) -> None:
        self.channel = channel
        self.position = start
        self.last_id = "0-0"
        self.end: int | None = None
        self.located = start == 0

    async def locate(self) -> None:
        """Start the XREAD at the entry holding ``position`` (not at the stream's start)."""
        if self.located:
            return
        holder = await self.channel.scan.store.redis.xrevrange(
            self.channel.key, keys.entry_id(self.position), "-", count=1
        )
        if holder:
            self.last_id = f"{keys.entry_index(holder[0][0])}-0"
        self.located = True

    @property
    def finished(self) -> bool:
        return self.end is not None and self.position >= self.end

    def feed(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[np.ndarray]:
        parts: list[np.ndarray] = []
        for entry_id, fields in entries:
            self.last_id = _text(entry_id)
            index = keys.entry_index(entry_id)
            if b"end" in fields:
                self.end = int(fields[b"end"])
                continue
            batch = self.channel.decode(fields)
            if index + len(batch) <= self.position:
                continue
            if index > self.position:
                raise DataGone(
                    f"channel {self.channel.name} of scan {self.channel.scan.id}: points "
                    f"{self.position}..{index - 1} were trimmed from Redis before being read"
                )
            parts.append(batch[self.position - index :])
            self.position = index + len(batch)
        return parts


async def _xread(
    store: DataStore, followers: Sequence[_Follower], timeout: float | None
) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """Blocking XREAD on the unfinished followers, up to ``timeout`` (None: until data)."""
    for follower in followers:
        await follower.locate()
    streams = {f.channel.key: f.last_id for f in followers if f.end is None}
    if not streams:
        return []
    deadline = None if timeout is None else anyio.current_time() + timeout
    away_since: float | None = None
    while True:
        remaining = _BLOCK_MS / 1000
        if deadline is not None:
            remaining = min(remaining, deadline - anyio.current_time())
        try:
            if remaining <= 0:
                found = await store.redis.xread(streams)  # a last look, not blocking
                return found or []
            found = await store.redis.xread(streams, block=max(1, int(remaining * 1000)))
        except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
            # A restart of Redis, a network blip: go on from the same place once it is back.
            now = anyio.current_time()
            away_since = now if away_since is None else away_since
            if now - away_since > store.reconnect_timeout:
                raise DataError(
                    f"the data Redis has been unreachable for {now - away_since:.0f} s "
                    f"(reconnect_timeout={store.reconnect_timeout} s): {exc}"
                ) from None
            if deadline is not None and now >= deadline:
                return []
            await anyio.sleep(0.1)
            continue
        away_since = None
        if found:
            return found


class ChannelCursor:
    """Reads a channel forward from ``start``, as points arrive.

    ``await cursor.read(timeout)`` returns the new points (at least one), or an empty array
    when ``timeout`` passed without any; raises :class:`EndOfData` once everything up to the
    seal was returned. ``async for batch in cursor`` iterates until the seal.
    """

    def __init__(self, channel: ChannelView, start: int = 0) -> None:
        self.channel = channel
        self._follower = _Follower(channel, start)

    @property
    def position(self) -> int:
        """The index of the next point to return."""
        return self._follower.position

    async def read(self, timeout: float | None = None) -> np.ndarray:
        follower = self._follower
        while True:
            if follower.finished:
                raise EndOfData(
                    f"channel {self.channel.name} of scan {self.channel.scan.id} ended at "
                    f"{follower.end} points"
                )
            found = await _xread(self.channel.scan.store, [follower], timeout)
            parts: list[np.ndarray] = []
            for _key, entries in found:
                parts.extend(follower.feed(entries))
            if parts:
                return np.concatenate(parts) if len(parts) > 1 else parts[0]
            if not found:
                return self.channel._empty()

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
    its seal. ``async for update in cursor`` iterates until then.
    """

    def __init__(self, scan: ScanView, channels: Sequence[ChannelView]) -> None:
        self.scan = scan
        self._followers = {ch.key.encode(): _Follower(ch, 0) for ch in channels}

    @property
    def finished(self) -> bool:
        """Every channel reached its seal and was read to it."""
        return all(f.finished for f in self._followers.values())

    @property
    def positions(self) -> dict[str, int]:
        return {f.channel.name: f.position for f in self._followers.values()}

    async def read(self, timeout: float | None = None) -> dict[str, np.ndarray]:
        if self.finished:
            raise EndOfData(f"every channel of scan {self.scan.id} was read to its end")
        while True:
            found = await _xread(self.scan.store, list(self._followers.values()), timeout)
            update: dict[str, np.ndarray] = {}
            for key, entries in found:
                follower = self._followers[key]
                parts = follower.feed(entries)
                if parts:
                    update[follower.channel.name] = (
                        np.concatenate(parts) if len(parts) > 1 else parts[0]
                    )
            if update or not found or self.finished:
                return update

    def __aiter__(self) -> AsyncIterator[dict[str, np.ndarray]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, np.ndarray]]:
        while not self.finished:
            update = await self.read()
            if update:
                yield update
