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

This module is the facade: the life cycle (one :class:`Phase`), the retry policy and the
flush task. Its parts, each testable alone: the entry format (``_entries``), the channels'
points and budgets (``_buffer``, no Redis), the scan's hash and states (``_record``), the
connection and its encoding (``_wire``). One module of ~510 lines because what is left is
one class whose life cycle, retry policy and flush task share its state (the phase, the
status, the wake-up of the flush): split, each part would reach into the others.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import anyio
import numpy as np
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from blissng.acquisition import Channel, ChannelSpec
from blissng.errors import leaf_exceptions
from blissng.redisdb import async_client

from . import _keys as keys
from ._buffer import Buffers, point_bytes
from ._document import END_REASONS, ScanDocument, spec_dtype
from ._errors import DataPublishError
from ._flush import RedisMemoryFull, RedisScan
from ._memory import check_can_start_scan
from ._options import PublisherOptions, PublisherState, PublisherStatus
from ._record import ScanRecord
from ._stopping import abort_reason, given_up, redis_address

E = TypeVar("E", bound=BaseException)

log = logging.getLogger("blissng.data.publisher")  # its name before the module was private


class Phase(enum.Enum):
    """Where a publisher is in its life (one state; its status says how Redis answers)."""

    NEW = "new"
    """Constructed; ``async with`` creates the scan."""
    OPEN = "open"
    """The scan exists in Redis; points flow."""
    CLOSING = "closing"
    """``close()`` runs: the seals and the end are being written."""
    CLOSED = "closed"
    """Everything is in Redis; acknowledgements are still read until the block is left."""
    LEFT = "left"
    """The ``async with`` block was left."""
    FAILED = "failed"
    """Redis stayed away or full too long, or refused a write: ``failure`` says why."""


class ScanPublisher:
    """Publishes one scan. Usage (in the scan's task group)::

        publisher = ScanPublisher(redis_urls.data, ScanDocument(...), channels)
        async with publisher:            # creates the scan (state "created"), starts flushing
            await publisher.set_state("prepared")
            ...                          # the channels emit; the publisher is subscribed
            await publisher.close("success")   # seals every stream, state "closed"

    Leaving the block without ``close`` closes with ``aborted`` (cancelled) or ``failed``
    (an exception), in a shielded scope with a deadline.

    ``redis`` is the data Redis URL (the publisher opens its own client) or a client.
    ``channels`` are the scan's :class:`Channel` objects: the publisher subscribes itself to
    each (it is their :class:`~blissng.acquisition.ChannelSink`).
    """

    def __init__(
        self,
        redis: str | aredis.Redis,
        document: ScanDocument | Mapping[str, Any],
        channels: Iterable[Channel],
        *,
        options: PublisherOptions | None = None,
    ) -> None:
        self.options = options = options or PublisherOptions()
        self.document = ScanDocument.from_any(document)
        self._url = redis if isinstance(redis, str) else None
        self._client: aredis.Redis | None = None if isinstance(redis, str) else redis
        channels = list(channels)
        for channel in channels:
            if not isinstance(channel, Channel):
                raise TypeError(
                    f"scan {self.document.id}: ScanPublisher takes the scan's Channel objects "
                    f"(it subscribes to them), not {type(channel).__name__}: wrap a spec in "
                    "Channel(spec)"
                )
        specs = [channel.spec for channel in channels]
        dtypes = [spec_dtype(spec) for spec in specs]
        try:
            self._buffers = Buffers(
                (
                    (s.name, keys.channel_key(self.document.id, s.name), point_bytes(d, s.shape))
                    for s, d in zip(specs, dtypes, strict=True)
                ),
                max_entry_bytes=options.max_entry_bytes,
                retain_bytes=(
                    options.retain_bytes if self.document.save else options.retain_unsaved_bytes
                ),
                keep_written_bytes=options.keep_written_bytes,
            )
        except ValueError as exc:
            raise ValueError(f"scan {self.document.id}: {exc}") from None
        self._dtypes = {s.name: (s, d) for s, d in zip(specs, dtypes, strict=True)}
        self._record = ScanRecord.new(self.document, specs)
        self._phase = Phase.NEW
        self._failure: BaseException | None = None
        self._status: PublisherState = "idle"
        self._message = ""
        self._wake = anyio.Event()  # the flush task has work
        self._woken = False  # _wake is set (cheaper to test on every put)
        self._progress = anyio.Event()  # a flush went through
        self._room = anyio.Event()  # the buffer has room again
        self._flush_lock = anyio.Lock()
        self._scan: RedisScan | None = None  # the Redis side, once the block is entered
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._last_flush = -1e9  # flushes are paced (PublisherOptions.min_flush_interval)
        for channel in channels:
            channel.subscribe(self)

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
        return {ch.name: ch.key for ch in self._buffers}

    @property
    def status(self) -> PublisherStatus:
        return PublisherStatus(
            state=self._status,
            message=self._message,
            buffered_bytes=self._buffers.buffered,
            retained_bytes=self._buffers.retained_bytes,
            published_points={ch.name: ch.published for ch in self._buffers},
            acknowledged_points={ch.name: ch.acked for ch in self._buffers},
        )

    def _set_status(self, state: PublisherState, message: str = "") -> None:
        if state != self._status and state in ("retrying", "memory_full"):
            log.warning("scan %s: %s", self.scan_id, message)
        self._status, self._message = state, message

    # ------------------------------------------------------------------ life cycle

    def open(self) -> AbstractAsyncContextManager[ScanPublisher]:
        """``async with publisher.open() as pub:`` (same as ``async with publisher``)."""
        return self

    async def __aenter__(self) -> ScanPublisher:
        if self._phase is not Phase.NEW:
            raise RuntimeError(f"publisher of scan {self.scan_id} was already opened")
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
            self._scan = RedisScan(
                self._client,
                self.document,
                self._buffers,
                self._record,
                socket_timeout=self.options.socket_timeout,
                ack_interval=self.options.ack_interval,
                retain_bytes=self.options.retain_bytes,
                status=lambda: self._status,
                set_status=self._set_status,
                wake=self._wake_flush,
            )
            await self._create()
            stack.push_async_callback(self._scan.pipeline.aclose)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            task_group.start_soon(self._flush_loop)
        except BaseException:
            await stack.aclose()
            raise
        self._exit_stack = stack
        self._task_group = task_group
        self._phase = Phase.OPEN
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
            if self._phase in (Phase.OPEN, Phase.CLOSING):
                if exc is None:
                    reason, error = "success", None
                elif isinstance(exc, anyio.get_cancelled_exc_class() | KeyboardInterrupt):
                    reason, error = "aborted", abort_reason() or "aborted by the user"
                else:
                    reason, error = "failed", f"{type(exc).__name__}: {exc}"
                with anyio.CancelScope(shield=True) as scope:
                    scope.deadline = anyio.current_time() + self.options.close_timeout
                    with contextlib.suppress(DataPublishError):
                        await self.close(reason, error)
        finally:
            if self._phase is not Phase.CLOSED:
                self._task_group.cancel_scope.cancel()
            if self._phase is not Phase.FAILED:
                self._phase = Phase.LEFT
            self._wake.set()
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

    async def set_state(self, state: str) -> None:
        """Record ``prepared``, ``started`` or ``stopped``; returns once it is in Redis."""
        self._record.check_advance(state)
        self._check_open()
        seq = self._record.advance(state)
        self._woken = True
        self._wake.set()
        await self._wait_for(lambda: self._record.states_sent >= seq)

    async def flushed(self) -> None:
        """Returns once every point put so far is in Redis (a synchronisation point for tests
        and for a scan that wants its data visible before it goes on)."""
        self._check_open()
        targets = [(ch, ch.next_index) for ch in self._buffers]
        await self._wait_for(lambda: all(ch.published >= n for ch, n in targets))

    async def close(self, end_reason: str = "success", error: str | None = None) -> None:
        """Seal every stream (open channels with what was published), write the end.

        Returns once everything is in Redis. Idempotent.
        """
        if end_reason not in END_REASONS:
            raise ValueError(f"end_reason must be one of {END_REASONS}, got {end_reason!r}")
        if self._phase in (Phase.CLOSING, Phase.CLOSED):
            await self._wait_for(self._all_sent)
            return
        self._check_open()
        self._phase = Phase.CLOSING
        self._buffers.end_all()
        self._record.close(
            end_reason, error, None if self.document.save else self.document.retention.unsaved_ttl
        )
        # Flush here rather than wait for the flush task: on abort it is being cancelled
        # too, and close runs in a shielded scope.
        while not self._all_sent():
            await self._flush()
        self._phase = Phase.CLOSED
        self._set_status("closed")

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._phase not in (Phase.OPEN, Phase.CLOSING, Phase.CLOSED):
            raise RuntimeError(
                f"publisher of scan {self.scan_id} is not open: use 'async with publisher:'"
            )

    def _all_sent(self) -> bool:
        return self._record.all_sent and all(ch.sealed for ch in self._buffers)

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            if self._failure is not None:
                raise self._failure
            progress = self._progress
            self._wake.set()
            await progress.wait()

    def _wake_flush(self) -> None:
        self._wake.set()

    async def _flush_once(self) -> None:
        assert self._scan is not None
        await self._scan.flush_once(self._phase is Phase.CLOSING)

    def _fail(self, exc: BaseException) -> None:
        """The scan cannot be published: every waiter is told."""
        if not isinstance(exc, anyio.get_cancelled_exc_class()):
            self._failure = exc
            self._phase = Phase.FAILED
            self._set_status("failed", str(exc))
        self._progress.set()
        self._room.set()

    # ------------------------------------------------------------------ ChannelSink

    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None:
        """Queue a batch; waits only when the buffer is full (backpressure)."""
        # The per-point path (every emit of every channel): one test for the usual case.
        if self._failure is not None:
            raise self._failure
        known = self._dtypes.get(spec.name)
        if known is not None:
            dtype = known[1]
            if batch.dtype is not dtype and batch.dtype != dtype:
                if known[0].kind == "reference" and batch.dtype.itemsize == dtype.itemsize:
                    batch = batch.view(dtype)
                else:
                    batch = batch.astype(dtype)
        try:
            # a copy, in C order: the emitter may reuse its array
            self._buffers.put(spec.name, index, len(batch), batch.tobytes())
        except DataPublishError as exc:
            raise DataPublishError(f"scan {self.scan_id}: {exc}") from None
        if not self._woken:
            self._woken = True
            self._wake.set()
        if self._buffers.buffered > self.options.buffer_bytes:
            await self._wait_for_room()

    async def end(self, spec: ChannelSpec, length: int) -> None:
        """The channel has no more points: its stream is sealed at ``length``."""
        try:
            news = self._buffers.end(spec.name, length)
        except DataPublishError as exc:
            raise DataPublishError(f"scan {self.scan_id}: {exc}") from None
        if news:
            self._wake.set()

    async def _wait_for_room(self) -> None:
        while self._buffers.buffered > self.options.buffer_bytes:
            if self._failure is not None:
                raise self._failure
            room = self._room
            await room.wait()

    # ------------------------------------------------------------------ Redis side

    @property
    def _redis(self) -> aredis.Redis:
        assert self._client is not None
        return self._client

    async def _create(self) -> None:
        """Hash, first state and announcement in one transaction (a retry cannot repeat it)."""
        if self.options.check_memory:
            await self._retrying(lambda: check_can_start_scan(self._redis))
        scan = self._scan
        assert scan is not None
        await self._retrying(scan.create_once)
        scan.pipeline.created = True
        self._set_status("ok")

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
                hopeless = given_up(self._address())  # the server knows it will not come back
                if hopeless is not None:
                    raise DataPublishError(
                        f"scan {self.scan_id}: {hopeless}; its points not yet written by the "
                        "writer are lost"
                    ) from None
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
            except RedisMemoryFull as exc:
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
                if self._status in ("retrying", "idle") or (
                    self._status == "memory_full"
                    and not (self._scan is not None and self._scan.guard_full)
                ):
                    if self._status != "idle":
                        log.warning("scan %s: publishing again", self.scan_id)
                    self._set_status("ok")
                return
            await anyio.sleep(delay)
            delay = min(max(delay * 2, 0.01), 0.5)

    def _address(self) -> str:
        return redis_address(self._url if self._url is not None else self._redis)

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
                leaving = self._phase is Phase.LEFT
                since = anyio.current_time() - self._last_flush
                interval = (
                    self.options.busy_flush_interval
                    if self._scan is not None and self._scan.busy
                    else self.options.min_flush_interval
                )
                if (
                    since < interval
                    and self._buffers.buffered < self.options.max_entry_bytes
                    and not leaving
                ):  # small points: let a few more join; big data goes at once
                    await anyio.sleep(interval - since)
                self._wake = anyio.Event()
                self._woken = False
                self._last_flush = anyio.current_time()
                await self._flush()
                if self._phase is Phase.LEFT and self._all_sent():  # now, not before the flush
                    return
        except BaseException as exc:
            self._fail(exc)
            raise

    async def _flush(self) -> None:
        """Send what is pending (retrying), then wake whoever waits on progress or room."""
        try:
            async with self._flush_lock:
                await self._retrying(self._flush_once)
        except BaseException as exc:
            self._fail(exc)
            raise
        progress, self._progress = self._progress, anyio.Event()
        progress.set()
        if self._buffers.buffered <= self.options.buffer_bytes:
            room, self._room = self._room, anyio.Event()
            room.set()


def _single(group: BaseExceptionGroup, kind: type[E]) -> E | None:
    return next((exc for exc in leaf_exceptions(group) if isinstance(exc, kind)), None)
