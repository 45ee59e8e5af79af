"""The scan publisher: a ChannelSink that streams a scan's channels into Redis.

Why it looks like this (docs/data-model.md; docs/decisions/0002-redis-restart.md):

- ``put`` never talks to Redis: it appends the batch to a bounded buffer and wakes the flush
  task. Only a full buffer makes it wait (backpressure on the acquisition).
- One flush task, owned by the publisher's task group, merges what accumulated per channel and
  sends it in one pipeline of ``XADD key <first index>-1``; while a pipeline is in flight more
  points accumulate, so batches grow with the load and latency stays low when idle.
- Retried writes are idempotent: an XADD of an existing ID fails, which means "done".
- Until the writer acknowledges points on disk, published entries are retained (within a
  budget) so that a restarted, empty Redis gets them again.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import math
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, TypeVar

import anyio
import numpy as np
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from blissng.acquisition.channels import Channel, ChannelSpec
from blissng.redisdb import async_client

from . import keys
from .document import END_REASONS, STATES, ScanDocument, now, spec_dtype
from .errors import DataPublishError
from .memory import _text, check_can_start_scan

E = TypeVar("E", bound=BaseException)

log = logging.getLogger(__name__)

PublisherState = Literal["idle", "ok", "retrying", "memory_full", "failed", "closed"]


@dataclasses.dataclass(frozen=True)
class PublisherOptions:
    """Tuning of one publisher. Defaults suit a beamline; tests shorten the times."""

    buffer_bytes: int = 64 * 2**20
    """Points waiting to be sent; ``put`` waits (backpressure) above this."""
    max_entry_bytes: int = 2**20
    """Consecutive batches of a channel are merged into one entry up to this size."""
    retain_bytes: int = 256 * 2**20
    """Budget of sent-but-not-on-disk entries kept to republish after a Redis restart."""
    retain_unsaved_bytes: int = 16 * 2**20
    """The same for an unsaved scan (no writer will ever acknowledge it: a ``ct`` is
    protected whole, a long unsaved scan keeps its last points)."""
    redis_timeout: float = 30.0
    """Redis unreachable this long: the scan fails with :class:`DataPublishError`."""
    memory_full_timeout: float = 600.0
    """Redis full of unwritten data this long: the scan fails."""
    socket_timeout: float = 5.0
    """One Redis command taking longer is a lost connection."""
    min_flush_interval: float = 0.002
    """At most one pipeline per this many seconds: points arriving meanwhile share entries
    (bounds the number of XADDs per second, and the latency it adds)."""
    busy_flush_interval: float = 0.008
    """The same when points pour in (the last pipeline carried >= 64 points of a channel):
    fewer, bigger entries cost less CPU; a fast scan's display does not need 2 ms."""
    ack_interval: float = 0.5
    """How often the writer's acknowledgements are read (releases retained entries)."""
    keep_written_bytes: int | None = 64 * 2**20
    """Per channel, written (acknowledged) data kept in the stream before trimming
    (``XTRIM MINID``); ``None`` never trims (the memory guard still may)."""
    close_timeout: float = 30.0
    """Deadline of the shielded close (seal streams, write the end) on abort."""
    check_memory: bool = True
    """Refuse to create the scan when the memory guard says Redis is full."""


@dataclasses.dataclass(frozen=True)
class PublisherStatus:
    """What a display shows about a publisher."""

    state: PublisherState
    message: str
    buffered_bytes: int
    retained_bytes: int
    published_points: dict[str, int]
    acknowledged_points: dict[str, int] = dataclasses.field(default_factory=dict)
    """What the writer says is on disk, per channel (as last read)."""


@dataclasses.dataclass
class _Entry:
    """A batch as stored in one stream entry."""

    index: int
    n: int
    payload: bytes


@dataclasses.dataclass(eq=False)
class _ChannelState:
    spec: ChannelSpec
    key: str
    dtype: np.dtype[Any]
    pending: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)
    # Entries sent at least once and not confirmed: resent with the SAME boundaries, so that
    # "this ID exists" always means "this very entry is in Redis".
    inflight: list[_Entry] = dataclasses.field(default_factory=list)
    pending_index: int = 0  # index of the first point not confirmed in Redis
    next_index: int = 0  # index the next put must start at
    end_length: int | None = None  # from end() or close(): the seal to write
    seal_sent: bool = False
    # Sent (or in flight) and not acknowledged on disk: republished after a Redis restart.
    retained: collections.deque[_Entry] = dataclasses.field(default_factory=collections.deque)
    acked: int = 0
    trim_target: int | None = None  # trim written points before this index (XTRIM MINID)
    trimmed_to: int = 0  # the stream starts at the entry holding this index

    @property
    def published(self) -> int:
        return self.pending_index


class ScanPublisher:
    """Publishes one scan. Usage (in the scan's task group)::

        publisher = ScanPublisher(redis_urls.data, ScanDocument(...), channels)
        async with publisher:            # creates the scan (state "created"), starts flushing
            await publisher.set_state("prepared")
            ...                          # channels emit; the publisher is subscribed to them
            await publisher.close("success")   # seals every stream, state "closed"

    Leaving the block without ``close`` closes with ``aborted`` (cancelled) or ``failed``
    (an exception), in a shielded scope with a deadline.

    ``redis`` is the data Redis URL (the publisher opens its own client) or a client.
    ``channels`` are :class:`Channel` objects (subscribed here) or bare specs (subscribe the
    publisher yourself: ``channel.subscribe(publisher.sink)``).
    """

    def __init__(
        self,
        redis: str | aredis.Redis,
        document: ScanDocument | Mapping[str, Any],
        channels: Iterable[Channel | ChannelSpec],
        *,
        options: PublisherOptions | None = None,
    ) -> None:
        self.options = options or PublisherOptions()
        self.document = ScanDocument.from_any(document)
        self._url = redis if isinstance(redis, str) else None
        self._client: aredis.Redis | None = None if isinstance(redis, str) else redis
        self._channels: dict[str, _ChannelState] = {}
        to_subscribe: list[Channel] = []
        for item in channels:
            spec = item.spec if isinstance(item, Channel) else item
            if spec.name in self._channels:
                raise ValueError(f"scan {self.document.id}: two channels named {spec.name!r}")
            self._channels[spec.name] = _ChannelState(
                spec, keys.channel_key(self.document.id, spec.name), spec_dtype(spec)
            )
            if isinstance(item, Channel):
                to_subscribe.append(item)
        for channel in to_subscribe:
            channel.subscribe(self)
        self._start_time = now()
        self._doc_json = self.document.to_json_dict(
            [c.spec for c in self._channels.values()], self._start_time
        )
        self._hash: dict[str, str] = {
            "id": self.document.id,
            "doc": json.dumps(self._doc_json),
            "state": "created",
            "start_time": repr(self._start_time),
        }
        self._hash_dirty: set[str] = set()
        self._states: list[dict[str, str]] = [{"state": "created", "time": repr(self._start_time)}]
        self._states_sent = 1  # "created" is written with the hash, in one transaction
        self._expire_ttl: int | None = None
        self._expire_sent = False
        self._acks_raw: dict[str, str] = {}
        self._buffered = 0
        self._retained_bytes = 0
        self._retain_overflow_warned = False
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self._room = anyio.Event()
        self._failure: BaseException | None = None
        self._created = False
        self._closing = False
        self._closed = False
        self._stopping = False
        self._state: PublisherState = "idle"
        self._message = ""
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._open = False
        self._memory_full_flag = False
        self._flush_lock = anyio.Lock()
        self._connection: Any = None
        self._buffer_limit = self.options.buffer_bytes
        self._busy = False
        self._woken = False
        self._last_flush = -1e9
        self._check_due = True
        self._last_check = -1e9

    # ------------------------------------------------------------------ identity, status

    @property
    def scan_id(self) -> str:
        return self.document.id

    @property
    def key(self) -> str:
        """The Redis key of the scan hash (``blissng:scan:<id>``)."""
        return keys.scan_key(self.document.id)

    @property
    def stream_keys(self) -> dict[str, str]:
        return {name: ch.key for name, ch in self._channels.items()}

    @property
    def sink(self) -> ScanPublisher:
        """The ChannelSink to subscribe to channels (the publisher itself)."""
        return self

    @property
    def status(self) -> PublisherStatus:
        return PublisherStatus(
            state=self._state,
            message=self._message,
            buffered_bytes=self._buffered,
            retained_bytes=self._retained_bytes,
            published_points={name: ch.published for name, ch in self._channels.items()},
            acknowledged_points={name: ch.acked for name, ch in self._channels.items()},
        )

    def _set_status(self, state: PublisherState, message: str = "") -> None:
        if state != self._state and state in ("retrying", "memory_full"):
            log.warning("scan %s: %s", self.scan_id, message)
        self._state, self._message = state, message

    # ------------------------------------------------------------------ life cycle

    def open(self) -> AbstractAsyncContextManager[ScanPublisher]:
        """``async with publisher.open() as pub:`` (same as ``async with publisher``)."""
        return self

    async def __aenter__(self) -> ScanPublisher:
        if self._exit_stack is not None:
            raise RuntimeError(f"publisher of scan {self.scan_id} is already open")
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            if self._client is None:
                assert self._url is not None
                client = async_client(
                    self._url,
                    retry=Retry(NoBackoff(), 0),
                    socket_timeout=self.options.socket_timeout,
                    socket_connect_timeout=self.options.socket_timeout,
                )
                stack.push_async_callback(client.aclose)
                self._client = client
            await self._create()
            stack.push_async_callback(self._close_connection)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            task_group.start_soon(self._flush_loop)
        except BaseException:
            await stack.aclose()
            raise
        self._exit_stack = stack
        self._task_group = task_group
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool | None:
        stack, self._exit_stack = self._exit_stack, None
        assert stack is not None and self._task_group is not None
        try:
            if not self._closed and self._failure is None:
                if exc is None:
                    reason, error = "success", None
                elif isinstance(exc, anyio.get_cancelled_exc_class() | KeyboardInterrupt):
                    reason, error = "aborted", "aborted by the user"
                else:
                    reason, error = "failed", f"{type(exc).__name__}: {exc}"
                with anyio.CancelScope(shield=True) as scope:
                    scope.deadline = anyio.current_time() + self.options.close_timeout
                    with contextlib.suppress(DataPublishError):
                        await self.close(reason, error)
        finally:
            self._open = False
            self._stopping = True
            self._wake.set()
            if not self._closed:
                self._task_group.cancel_scope.cancel()
            try:
                await stack.aclose()
            except BaseExceptionGroup as group:
                failure = _single(group, DataPublishError)
                if failure is not None:
                    raise failure from None
                raise
        if self._failure is not None and (
            exc is None or isinstance(exc, anyio.get_cancelled_exc_class())
        ):
            raise self._failure
        return None

    def subscribe(self, channels: Iterable[Channel]) -> None:
        """Subscribe the publisher to these channels (declared at construction)."""
        for channel in channels:
            if channel.name not in self._channels:
                raise ValueError(
                    f"scan {self.scan_id}: channel {channel.name!r} was not declared to the "
                    "publisher; pass it in ScanPublisher(..., channels)"
                )
            channel.subscribe(self)

    async def set_state(self, state: str) -> None:
        """Record ``prepared``, ``started`` or ``stopped``; returns once it is in Redis."""
        if state not in STATES or state in ("created", "closed"):
            raise ValueError(
                f"scan state must be one of prepared, started, stopped (close() writes "
                f"closed), got {state!r}"
            )
        current = self._states[-1]["state"]
        if STATES.index(state) <= STATES.index(current):
            raise ValueError(f"scan {self.scan_id} is {current!r}: it cannot go back to {state!r}")
        self._check_open()
        self._append_state({"state": state, "time": repr(now())})
        seq = len(self._states)
        await self._wait_for(lambda: self._states_sent >= seq)

    async def flushed(self) -> None:
        """Returns once every point put so far is in Redis (a synchronisation point for tests
        and for a scan that wants its data visible before it goes on)."""
        self._check_open()
        targets = [(ch, ch.next_index) for ch in self._channels.values()]
        await self._wait_for(lambda: all(ch.pending_index >= n for ch, n in targets))

    async def close(self, end_reason: str = "success", error: str | None = None) -> None:
        """Seal every stream (open channels with what was published), write the end.

        Returns once everything is in Redis. Idempotent.
        """
        if end_reason not in END_REASONS:
            raise ValueError(f"end_reason must be one of {END_REASONS}, got {end_reason!r}")
        if self._closing:
            await self._wait_for(self._all_sent)
            return
        self._check_open()
        self._closing = True
        for ch in self._channels.values():
            if ch.end_length is None:
                ch.end_length = ch.next_index
        end_time = repr(now())
        self._hash.update(end_time=end_time, end_reason=end_reason, error=error or "")
        self._hash_dirty.update(("end_time", "end_reason", "error"))
        self._append_state(
            {"state": "closed", "time": end_time, "end_reason": end_reason, "error": error or ""}
        )
        if not self.document.save:
            self._expire_ttl = self.document.retention.unsaved_ttl
        # Flush here rather than wait for the flush task: on abort it is being cancelled
        # too, and close runs in a shielded scope.
        while not self._all_sent():
            await self._flush()
        self._closed = True
        self._set_status("closed")

    def _append_state(self, fields: dict[str, str]) -> None:
        self._states.append(fields)
        self._hash["state"] = fields["state"]
        self._hash_dirty.add("state")
        self._wake.set()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._open:
            raise RuntimeError(
                f"publisher of scan {self.scan_id} is not open: use 'async with publisher:'"
            )

    def _all_sent(self) -> bool:
        return (
            self._states_sent == len(self._states)
            and not self._hash_dirty
            and all(
                not ch.pending and not ch.inflight and ch.seal_sent
                for ch in self._channels.values()
            )
            and (self._expire_ttl is None or self._expire_sent)
        )

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            if self._failure is not None:
                raise self._failure
            progress = self._progress
            self._wake.set()
            await progress.wait()

    # ------------------------------------------------------------------ ChannelSink

    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None:
        """Queue a batch; waits only when the buffer is full (backpressure)."""
        # The per-point path (every emit of every channel): one test for the usual case,
        # the reasons for refusing in _refuse_put.
        ch = self._channels.get(spec.name)
        if (
            ch is None
            or index != ch.next_index
            or ch.end_length is not None
            or self._failure is not None
        ):
            raise self._refuse_put(ch, spec, index)
        dtype = batch.dtype
        if dtype is not ch.dtype and dtype != ch.dtype:
            if ch.spec.kind == "reference" and dtype.itemsize == ch.dtype.itemsize:
                batch = batch.view(ch.dtype)
            else:
                batch = batch.astype(ch.dtype)
        payload = batch.tobytes()  # a copy, in C order: the emitter may reuse its array
        n = len(batch)
        ch.pending.append((n, payload))
        ch.next_index = index + n
        self._buffered += len(payload)
        if not self._woken:
            self._woken = True
            self._wake.set()
        if self._buffered > self._buffer_limit:
            await self._wait_for_room()

    def _refuse_put(self, ch: _ChannelState | None, spec: ChannelSpec, index: int) -> BaseException:
        if self._failure is not None:
            return self._failure
        if ch is None:
            return DataPublishError(
                f"scan {self.scan_id}: channel {spec.name!r} was not declared to the publisher"
            )
        if ch.end_length is not None:
            return DataPublishError(f"scan {self.scan_id}: channel {spec.name!r} has ended")
        return DataPublishError(
            f"scan {self.scan_id}: channel {spec.name!r} got a batch at index {index}, "
            f"expected {ch.next_index} (points must arrive in order, without gap)"
        )

    async def end(self, spec: ChannelSpec, length: int) -> None:
        """The channel has no more points: its stream is sealed at ``length``."""
        ch = self._channels.get(spec.name)
        if ch is None:
            raise DataPublishError(
                f"scan {self.scan_id}: channel {spec.name!r} was not declared to the publisher"
            )
        if length != ch.next_index:
            raise DataPublishError(
                f"scan {self.scan_id}: channel {spec.name!r} ends at {length} points but "
                f"{ch.next_index} were emitted"
            )
        if ch.end_length is None:
            ch.end_length = length
            self._wake.set()

    async def _wait_for_room(self) -> None:
        while self._buffered > self.options.buffer_bytes:
            if self._failure is not None:
                raise self._failure
            room = self._room
            await room.wait()

    # ------------------------------------------------------------------ Redis side

    @property
    def _redis(self) -> aredis.Redis:
        assert self._client is not None
        return self._client

    def _scan_keys(self) -> list[str]:
        sid = self.scan_id
        return [
            keys.scan_key(sid),
            keys.state_key(sid),
            keys.ack_key(sid),
            *(ch.key for ch in self._channels.values()),
        ]

    async def _create(self) -> None:
        """Hash, first state and announcement in one transaction (a retry cannot repeat it)."""
        if self.options.check_memory:
            await self._retrying(lambda: check_can_start_scan(self._redis))
        await self._retrying(self._create_once)
        self._created = True
        self._set_status("ok")

    async def _create_once(self) -> None:
        if await self._redis.exists(self.key):
            if self._created or await self._redis.hget(self.key, "start_time") == (
                self._hash["start_time"].encode()
            ):
                return  # an earlier attempt went through before the connection dropped
            raise DataPublishError(
                f"a scan with id {self.scan_id!r} already exists in Redis; scan ids must be unique"
            )
        async with self._redis.pipeline(transaction=True) as pipe:
            self._queue_creation(pipe)
            await pipe.execute()

    def _queue_creation(self, pipe: Pipeline) -> None:
        sid = self.scan_id
        pipe.hset(self.key, mapping=self._hash)  # type: ignore[arg-type]
        pipe.xadd(keys.state_key(sid), self._states[0], id=keys.entry_id(0))  # type: ignore[arg-type]
        doc = self.document
        pipe.xadd(
            keys.SCANS_STREAM,
            {
                "id": sid,
                "key": self.key,
                "session": doc.session,
                "number": doc.number,
                "name": doc.name,
                "dataset": doc.dataset if doc.save and doc.dataset else "",
            },
            maxlen=keys.SCANS_STREAM_MAXLEN,
            approximate=True,
        )
        if doc.save and doc.dataset:
            ttl = doc.retention.dataset_ttl
            dkey = keys.dataset_key(doc.dataset)
            pipe.hset(
                dkey,
                mapping={
                    "dataset": doc.dataset,
                    "session": doc.session,
                    "path": doc.path or "",
                    "updated": repr(self._start_time),
                },
            )
            pipe.expire(dkey, ttl)
            skey = keys.dataset_scans_key(doc.dataset)
            pipe.rpush(skey, sid)
            pipe.expire(skey, ttl)

    async def _retrying(self, attempt: Callable[[], Awaitable[None]]) -> None:
        """Run ``attempt`` until it succeeds; connection errors and OOM are retried within
        their time limits, then fail the scan with a clear error."""
        away_since: float | None = None
        full_since: float | None = None
        delay = 0.0  # a dropped connection is retried at once, then with growing delays
        while True:
            try:
                await attempt()
            except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
                away_since = away_since if away_since is not None else anyio.current_time()
                waited = anyio.current_time() - away_since
                if waited > self.options.redis_timeout:
                    raise DataPublishError(
                        f"scan {self.scan_id}: the data Redis ({self._where()}) has been "
                        f"unreachable for {waited:.1f} s (limit redis_timeout="
                        f"{self.options.redis_timeout} s): the scan data cannot be published. "
                        f"Last error: {exc}"
                    ) from None
                self._set_status(
                    "retrying",
                    f"data Redis unreachable ({exc}); retrying (the scan fails after "
                    f"{self.options.redis_timeout:.0f} s)",
                )
            except _RedisMemoryFull as exc:
                full_since = full_since if full_since is not None else anyio.current_time()
                waited = anyio.current_time() - full_since
                if waited > self.options.memory_full_timeout:
                    raise DataPublishError(
                        f"scan {self.scan_id}: the data Redis has been full of unwritten data "
                        f"for {waited:.0f} s: {exc}"
                    ) from None
                self._set_status(
                    "memory_full",
                    f"data Redis full of data not yet written to disk; holding scan data "
                    f"(the acquisition waits when the buffer is full): {exc}",
                )
            else:
                if self._state in ("retrying", "idle") or (
                    self._state == "memory_full" and not self._memory_full_flag
                ):
                    if self._state != "idle":
                        log.warning("scan %s: publishing again", self.scan_id)
                    self._set_status("ok")
                return
            await anyio.sleep(delay)
            delay = min(max(delay * 2, 0.01), 0.5)

    def _where(self) -> str:
        if self._url is not None:
            return self._url
        kwargs = self._redis.connection_pool.connection_kwargs
        return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")

    async def _flush_loop(self) -> None:
        try:
            while True:
                with anyio.move_on_after(self.options.ack_interval):
                    await self._wake.wait()
                since = anyio.current_time() - self._last_flush
                interval = (
                    self.options.busy_flush_interval
                    if self._busy
                    else self.options.min_flush_interval
                )
                if (
                    since < interval
                    and self._buffered < self.options.max_entry_bytes
                    and not self._stopping
                ):  # small points: let a few more join; big data goes at once
                    await anyio.sleep(interval - since)
                self._wake = anyio.Event()
                self._woken = False
                self._last_flush = anyio.current_time()
                await self._flush()
                if self._stopping and (self._closed or self._all_sent()):
                    return
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                self._failure = exc
                self._set_status("failed", str(exc))
            self._progress.set()
            self._room.set()
            raise

    async def _flush(self) -> None:
        """Send what is pending (retrying), then wake whoever waits on progress or room."""
        try:
            async with self._flush_lock:
                await self._retrying(self._flush_once)
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                self._failure = exc
                self._set_status("failed", str(exc))
            self._progress.set()
            self._room.set()
            raise
        progress, self._progress = self._progress, anyio.Event()
        progress.set()
        if self._buffered <= self.options.buffer_bytes:
            room, self._room = self._room, anyio.Event()
            room.set()

    async def _flush_once(self) -> None:
        """One pipeline: what is pending, plus the writer's acks and the memory status."""
        memory_state = await self._send_pending()
        if memory_state == b"full" and self._has_pending_data():
            raise _RedisMemoryFull(await self._memory_message())

    def _has_pending_data(self) -> bool:
        return any(ch.pending or ch.inflight for ch in self._channels.values())

    async def _memory_message(self) -> str:
        message = await self._redis.hget(keys.MEMORY_STATUS, "message")
        return _text(message) if message else "memory guard state full"

    async def _send_pending(self) -> bytes | None:
        """One pipeline of raw RESP commands (redis-py's per-command packing costs more than
        the rest of the publisher). The writer's acks, the memory status and the existence
        of the scan (a restart?) are read every ``ack_interval``, at close, and after an
        error."""
        hold_data = self._memory_full_flag
        now_ = anyio.current_time()
        trims = await self._trim_points()
        check = (
            self._check_due or self._closing or now_ - self._last_check >= self.options.ack_interval
        )
        self._check_due = True  # until this pipeline succeeds
        commands: list[tuple[bytes | str | int, ...]] = []
        if check:
            commands.append((b"EXISTS", self.key))
            commands.append((b"HGETALL", keys.ack_key(self.scan_id)))
            commands.append((b"HGET", keys.MEMORY_STATUS, b"state"))
        first = len(commands)
        sent_data: list[tuple[_ChannelState, list[_Entry]]] = []
        seals: list[_ChannelState] = []
        for ch in self._channels.values():
            if not hold_data and (ch.pending or ch.inflight):
                entries = self._merge(ch)
                for entry in entries:
                    entry_id = keys.entry_id(entry.index)
                    commands.append((b"XADD", ch.key, entry_id, b"n", entry.n, b"d", entry.payload))
                sent_data.append((ch, entries))
            if (
                ch.end_length is not None
                and not ch.seal_sent
                and (not hold_data or not (ch.pending or ch.inflight))
            ):
                entry_id = keys.entry_id(ch.end_length)
                commands.append((b"XADD", ch.key, entry_id, b"end", ch.end_length))
                seals.append(ch)
            if ch in trims:
                commands.append((b"XTRIM", ch.key, b"MINID", trims[ch]))
        sent_fields = {f: self._hash[f] for f in self._hash_dirty}
        if sent_fields:
            commands.append((b"HSET", self.key, *(x for item in sent_fields.items() for x in item)))
        ready_states = len(self._states)
        if self._states[-1]["state"] == "closed" and not all(
            ch.seal_sent or ch in seals for ch in self._channels.values()
        ):
            ready_states -= 1  # "closed" goes after every seal
        for seq in range(self._states_sent, ready_states):
            fields = self._states[seq]
            commands.append(
                (
                    b"XADD",
                    keys.state_key(self.scan_id),
                    keys.entry_id(seq),
                    *(x for item in fields.items() for x in item),
                )
            )
        expire = (
            self._expire_ttl is not None
            and not self._expire_sent
            and ready_states == len(self._states)
            and all(ch.seal_sent or ch in seals for ch in self._channels.values())
        )
        if expire:
            assert self._expire_ttl is not None
            for key in self._scan_keys():
                commands.append((b"EXPIRE", key, self._expire_ttl))
        if not commands:
            self._check_due = False
            return b"full" if self._memory_full_flag else None
        writes = len(commands) - first
        if writes:
            # One transaction: all of this flush or none of it. Readers never see a channel
            # ahead of another flush's points, and an OOM refusal cannot leave a gap (a
            # refused entry followed by an accepted one) that a retry could not fill.
            commands.insert(first, (b"MULTI",))
            commands.append((b"EXEC",))
        try:
            results = await self._execute(commands)
        except _ScanLost:
            await self._restore()
            self._wake.set()
            return b"full" if self._memory_full_flag else None
        acks: Any = None
        memory_state: Any = b"full" if self._memory_full_flag else None
        if check:
            exists, acks, memory_state = results[0], results[1], results[2]
            for value in (exists, acks, memory_state):
                if isinstance(value, Exception):
                    raise value
            if not exists:
                await self._restore()
                self._wake.set()
                return memory_state if isinstance(memory_state, bytes) else None
            self._last_check = now_
        self._check_due = False
        replies: list[Any] = []
        if writes:
            executed = results[-1]
            if isinstance(executed, Exception):  # EXECABORT: nothing was applied
                queued = [r for r in results[first + 1 : -1] if isinstance(r, Exception)]
                refusal = next((e for e in queued if _is_oom(e)), None)
                if refusal is not None or _is_oom(executed):
                    self._check_due = True
                    raise _RedisMemoryFull(str(refusal or executed))
                refused = queued[0] if queued else executed
                raise DataPublishError(f"scan {self.scan_id}: Redis refused a write: {refused}")
            replies = list(executed)
        errors = [r for r in replies if isinstance(r, Exception) and not _is_duplicate(r)]
        if errors:
            raise DataPublishError(f"scan {self.scan_id}: Redis refused a write: {errors[0]}")
        # Everything in this pipeline is in Redis.
        busy = False
        for ch, entries in sent_data:
            busy = busy or entries[-1].index + entries[-1].n - entries[0].index >= 64
            self._confirm(ch, entries)
        self._busy = busy
        for ch in seals:
            ch.seal_sent = True
        for ch, minid in trims.items():
            ch.trim_target = None
            ch.trimmed_to = max(ch.trimmed_to, keys.entry_index(minid))
        for field, value in sent_fields.items():
            if self._hash[field] == value:
                self._hash_dirty.discard(field)
        self._states_sent = max(self._states_sent, ready_states)
        if expire:
            self._expire_sent = True
        if isinstance(acks, list):  # RESP2
            acks = dict(zip(acks[::2], acks[1::2], strict=True))
        if isinstance(acks, dict):  # (RESP3 replies a map)
            self._apply_acks(acks)
        full = memory_state == b"full"
        if full:
            self._set_status(
                "memory_full",
                "the data Redis is full of data not yet written to disk: scan data is held "
                "(the acquisition waits once the buffer is full) until the writer catches up",
            )
        elif self._memory_full_flag and self._state == "memory_full":
            log.warning("scan %s: the data Redis has room again; publishing", self.scan_id)
            self._set_status("ok")
        self._memory_full_flag = full
        return memory_state if isinstance(memory_state, bytes) else None

    async def _trim_points(self) -> dict[_ChannelState, str]:
        """The MINID of each channel to trim: the entry holding its target point (never past
        it: an entry also holding unwritten points must stay)."""
        trims: dict[_ChannelState, str] = {}
        for ch in self._channels.values():
            if ch.trim_target is None:
                continue
            holder: Any = await self._redis.xrevrange(ch.key, keys.entry_id(ch.trim_target), "-", 1)
            if holder and keys.entry_index(holder[0][0]) > ch.trimmed_to:
                trims[ch] = _text(holder[0][0])
            else:
                ch.trim_target = None
        return trims

    async def _execute(self, commands: list[tuple[bytes | str | int, ...]]) -> list[Any]:
        """Send the commands in one write on the publisher's own connection; replies in
        order, a ``ResponseError`` instance for a command Redis refused.

        The connection is the publisher's alone, so a restarted Redis always shows as an
        error here; on the reconnection, the scan's existence is checked BEFORE any data goes
        (else new entries could reach an empty Redis ahead of the older ones a restore puts
        back, and a live reader would see a gap).
        """
        connection = self._connection
        if connection is None:
            pool = self._redis.connection_pool
            connection = self._connection = pool.connection_class(**pool.connection_kwargs)
        try:
            if not connection.is_connected:
                await connection.connect()
                if self._created:
                    await connection.send_packed_command(
                        _pack([(b"EXISTS", self.key)]), check_health=False
                    )
                    if not await connection.read_response(disable_decoding=True):
                        raise _ScanLost
            await connection.send_packed_command(_pack(commands), check_health=False)
            results: list[Any] = []
            # One deadline for the whole pipeline (a per-reply timeout costs more than the
            # reply); a TimeoutError is an OSError: a lost connection for _retrying.
            with anyio.fail_after(self.options.socket_timeout):
                for _ in commands:
                    try:
                        results.append(
                            await connection.read_response(disable_decoding=True, timeout=math.inf)
                        )
                    except ResponseError as exc:
                        results.append(exc)
        except BaseException as exc:
            if not isinstance(exc, _ScanLost):
                with anyio.CancelScope(shield=True):
                    await connection.disconnect()
            raise
        return results

    async def _close_connection(self) -> None:
        if self._connection is not None:
            with anyio.CancelScope(shield=True):
                await self._connection.disconnect()
            self._connection = None

    def _merge(self, ch: _ChannelState) -> list[_Entry]:
        """The channel's entries to send: those already tried (unchanged), then its pending
        batches merged into entries of at most ``max_entry_bytes``."""
        entries = ch.inflight
        index = entries[-1].index + entries[-1].n if entries else ch.pending_index
        group: list[bytes] = []
        group_n = 0
        group_bytes = 0
        limit = self.options.max_entry_bytes
        for n, payload in ch.pending:
            if group and group_bytes + len(payload) > limit:
                entries.append(_Entry(index, group_n, _join(group)))
                index += group_n
                group, group_n, group_bytes = [], 0, 0
            group.append(payload)
            group_n += n
            group_bytes += len(payload)
        if group:
            entries.append(_Entry(index, group_n, _join(group)))
        ch.pending = []
        ch.inflight = entries
        return entries

    def _confirm(self, ch: _ChannelState, entries: list[_Entry]) -> None:
        assert ch.inflight is entries
        ch.inflight = []
        for entry in entries:
            size = len(entry.payload)
            self._buffered -= size
            ch.pending_index = entry.index + entry.n
            if entry.index + entry.n > ch.acked:
                ch.retained.append(entry)
                self._retained_bytes += size
        self._enforce_retain_budget()

    def _enforce_retain_budget(self) -> None:
        budget = (
            self.options.retain_bytes if self.document.save else self.options.retain_unsaved_bytes
        )
        while self._retained_bytes > budget:
            oldest = min(
                (ch for ch in self._channels.values() if ch.retained),
                key=lambda c: c.retained[0].index,
            )
            entry = oldest.retained.popleft()
            self._retained_bytes -= len(entry.payload)
            if not self._retain_overflow_warned and self.document.save:
                self._retain_overflow_warned = True
                log.warning(
                    "scan %s: the writer is more than %d MB behind; points it has not written "
                    "would be lost if the data Redis restarted now",
                    self.scan_id,
                    self.options.retain_bytes // 2**20,
                )

    def _apply_acks(self, acks: dict[bytes, bytes]) -> None:
        keep = self.options.keep_written_bytes
        for raw_name, raw_value in acks.items():
            name = raw_name.decode()
            ch = self._channels.get(name)
            if ch is None:
                continue
            try:
                acked = int(raw_value)
            except ValueError:
                continue
            self._acks_raw[name] = raw_value.decode()
            if acked <= ch.acked:
                continue
            ch.acked = acked
            while ch.retained and ch.retained[0].index + ch.retained[0].n <= acked:
                self._retained_bytes -= len(ch.retained.popleft().payload)
            if keep is None:
                continue
            point_bytes = max(1, ch.dtype.itemsize * int(np.prod(ch.spec.shape, dtype=int)))
            keep_points = max(1, keep // point_bytes)
            target = acked - keep_points
            if target > ch.trimmed_to + max(1, keep_points // 4):  # not for every ack
                ch.trim_target = target

    async def _restore(self) -> None:
        """Redis lost the scan (restart, flush): rewrite it from memory, in one transaction.

        The streams are deleted first: they hold only what this publisher wrote since the
        loss, and everything not on disk is retained here.
        """
        log.warning(
            "scan %s: the data Redis lost this scan (restart?); republishing %d kB retained",
            self.scan_id,
            self._retained_bytes // 1024,
        )
        sid = self.scan_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*self._scan_keys())
            self._queue_creation(pipe)
            for seq in range(1, self._states_sent):
                pipe.xadd(keys.state_key(sid), self._states[seq], id=keys.entry_id(seq))  # type: ignore[arg-type]
            sent_hash = {f: v for f, v in self._hash.items() if f not in self._hash_dirty}
            pipe.hset(self.key, mapping=sent_hash)  # type: ignore[arg-type]
            if self._acks_raw:
                pipe.hset(keys.ack_key(sid), mapping=self._acks_raw)  # type: ignore[arg-type]
            for ch in self._channels.values():
                for entry in ch.retained:
                    pipe.xadd(
                        ch.key, {"n": entry.n, "d": entry.payload}, id=keys.entry_id(entry.index)
                    )
                if ch.seal_sent:
                    assert ch.end_length is not None
                    pipe.xadd(ch.key, {"end": ch.end_length}, id=keys.entry_id(ch.end_length))
            if self._expire_sent and self._expire_ttl is not None:
                for key in self._scan_keys():
                    pipe.expire(key, self._expire_ttl)
            await pipe.execute()


class _ScanLost(Exception):
    """Redis no longer has the scan (a restart, a flush): restore it from memory."""


class _RedisMemoryFull(Exception):
    """Redis refused a write (OOM) or the memory guard says full: hold and retry."""


def _pack(commands: list[tuple[bytes | str | int, ...]]) -> list[bytes]:
    """RESP encoding of a pipeline; payloads are passed through without a copy."""
    out: list[bytes] = []
    head = bytearray()
    for command in commands:
        head += b"*%d\r\n" % len(command)
        for arg in command:
            if isinstance(arg, bytes):
                value = arg
            elif isinstance(arg, str):
                value = arg.encode()
            else:
                value = b"%d" % arg
            head += b"$%d\r\n" % len(value)
            if len(value) > 4096:
                out.append(bytes(head))
                out.append(value)
                head = bytearray(b"\r\n")
            else:
                head += value
                head += b"\r\n"
    out.append(bytes(head))
    return out


def _join(parts: list[bytes]) -> bytes:
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _is_duplicate(error: Exception) -> bool:
    return "equal or smaller than the target stream top item" in str(error)


def _is_oom(error: Exception) -> bool:
    return isinstance(error, OutOfMemoryError) or str(error).startswith("OOM")


def _single(group: BaseExceptionGroup, kind: type[E]) -> E | None:
    for exc in group.exceptions:
        if isinstance(exc, kind):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _single(exc, kind)
            if found is not None:
                return found
    return None
