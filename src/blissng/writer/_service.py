"""The writer service: follows scans in Redis and writes them to HDF5, crash-safe.

One task follows the new-scans stream (replaying it from the start, so a restarted writer
finds the scans it had not finished); each saved scan gets a :class:`ScanWriter` in the
service's task group, isolated from the others: a scan that fails (an unexpected error, its
file system stuck) is reported on its ack ``error`` and to its session, and retried with a
growing pause, while the other scans go on. All h5py and file-system work runs in worker
threads, per file system, under a deadline (``_storage.Storage``), never on the event loop.

Durability protocol (docs/data-model.md, "The writer's acknowledgements"): points are
acknowledged in Redis only after the file was flushed and fsync'ed; a restarted writer
truncates each channel to what was acknowledged and reads the rest again from Redis, which
never trims unacknowledged data. So a SIGKILL at any moment ends, after restart, in a complete
file equal to what was acquired.

The data Redis lost: the writer reconnects and goes on (the publisher rewrites its scan after
a Redis restart: decision 0002). A scan that stays gone from Redis (``vanish_grace``), or that
cannot be reached when the writer is stopped, is ended in its file with what the file holds
and why (``end_reason`` failed, ``@error``), and linked from its data set file.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import anyio
import redis.asyncio as aredis
from redis import ConnectionPool
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from blissng.data import DataError, DataStore, ScanNotFound, ScanView
from blissng.redisdb import async_client

from ._errors import WriterError
from ._scan import ScanWriter
from ._storage import Storage

log = logging.getLogger("blissng.writer")

STATUS_KEY = "blissng:writer"  # lag and activity, for displays
MAX_BACKOFF = 60.0  # at most this long between two tries of a failing scan
STREAM_READ_SIZE = 2**20  # socket reads of the channel streams' replies (MBs of points)
REDIS_TIMEOUT = 30.0  # a Redis command of the stream reader taking longer: Redis is away

_REDIS_ERRORS = (RedisError, DataError, OSError)


class WriterService:
    """``await WriterService(url).run()`` until cancelled; ``blissng writer`` runs it.

    ``fs_timeout``: the deadline of every blocking call (a file system not answering within
    it is reported stuck); ``min_free_bytes``: free space kept (None: the session's
    ``SCAN_SAVING.min_free_mb`` carried by each scan document); ``vanish_grace``: how long a
    scan the data Redis lost may take to be republished before its file is ended.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        flush_interval: float = 0.5,
        fs_timeout: float = 30.0,
        retry_interval: float = 2.0,
        min_free_bytes: int | None = None,
        vanish_grace: float = 30.0,
    ) -> None:
        self.redis_url = redis_url
        self.flush_interval = flush_interval  # at most this long between flushes (<= 1 s)
        self.retry_interval = retry_interval
        self.min_free_bytes = min_free_bytes
        self.vanish_grace = vanish_grace
        self.storage = Storage(fs_timeout)
        self.writers: dict[str, ScanWriter] = {}
        self.finished: set[str] = set()
        self.redis_error: str | None = None  # the data Redis cannot be reached (why)
        self.redis_timeout = REDIS_TIMEOUT
        self._stream_pool: ConnectionPool | None = None

    async def run(self) -> None:
        client = async_client(self.redis_url)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._publish_status, client)
                await self._follow(client, tg)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()
            if self._stream_pool is not None:
                # Idle connections only: one a stuck reader thread holds closes with it.
                self._stream_pool.disconnect(inuse_connections=False)

    def stream_reader(self) -> SyncRedis:
        """A blocking client for one scan's channel streams (used in a worker thread): large
        socket reads, XREAD replies kept as Redis sends them (no dict per entry). Its
        connections stay in the service's pool for the next scans: a new one costs more than
        a small scan's whole read (redis-py reads its package metadata for each)."""
        if self._stream_pool is None:
            self._stream_pool = ConnectionPool.from_url(
                self.redis_url,
                socket_read_size=STREAM_READ_SIZE,
                socket_timeout=self.redis_timeout,
                socket_connect_timeout=self.redis_timeout,
            )
        reader = SyncRedis(connection_pool=self._stream_pool)
        reader.set_response_callback("XREAD", _raw_reply)
        return reader

    async def _follow(self, client: aredis.Redis, tg: anyio.abc.TaskGroup) -> None:
        """Every saved scan, from the start of the new-scans stream; through Redis restarts."""
        backoff = self.retry_interval
        while True:
            try:
                async with DataStore(client) as store:
                    async for view in store.follow(since="0"):
                        self.redis_error = None
                        backoff = self.retry_interval
                        if view.id in self.writers or view.id in self.finished:
                            continue
                        if not view.info.get("save") or not view.info.get("path"):
                            continue
                        writer = ScanWriter(self, client, view)
                        self.writers[view.id] = writer
                        tg.start_soon(self._write, client, writer)
            except _REDIS_ERRORS as exc:
                self._redis_away(exc)
                await anyio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)

    def _redis_away(self, exc: BaseException) -> None:
        message = f"the data Redis cannot be reached: {type(exc).__name__}: {exc}"
        if message != self.redis_error:
            log.error("%s; retrying", message)
        self.redis_error = message

    async def _write(self, client: aredis.Redis, writer: ScanWriter) -> None:
        """One scan, isolated: its failures are reported and retried, never the writer's end."""
        backoff = self.retry_interval
        try:
            while True:
                try:
                    await writer.run()
                    self.finished.add(writer.scan_id)
                    return
                except _REDIS_ERRORS as exc:
                    self._redis_away(exc)
                    if isinstance(exc, ScanNotFound) or not await self._scan_exists(client, writer):
                        if await self._vanished(client, writer):
                            return
                except Exception as exc:
                    # A bug, or a document the writer cannot handle: this scan only.
                    log.exception("scan %s: unexpected error", writer.number)
                    await writer.report(WriterError(f"{type(exc).__name__}: {exc}"))
                await anyio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                # A new writer resumes from the file and the acknowledgements.
                view = await self._view(client, writer.scan_id)
                if view is None:
                    continue
                fresh = ScanWriter(self, client, view)
                fresh.carry_on_from(writer)
                self.writers[writer.scan_id] = writer = fresh
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.storage.timeout):
                # Stopped before a read found the Redis gone (killed, then SIGTERM at once):
                # ask it, or the file stays unended as if the scan could still resume.
                if self.redis_error is not None or not await self._redis_answers(client):
                    await self._end(writer, "the writer stopped while the data Redis was away")
            raise
        finally:
            self.writers.pop(writer.scan_id, None)

    async def _redis_answers(self, client: aredis.Redis) -> bool:
        """Whether the data Redis answers a PING within a second (noted when it does not)."""
        try:
            with anyio.fail_after(1.0):
                await client.ping()
            return True
        except (*_REDIS_ERRORS, TimeoutError) as exc:
            self._redis_away(exc)
            return False

    async def _scan_exists(self, client: aredis.Redis, writer: ScanWriter) -> bool:
        try:
            return bool(await client.exists(f"blissng:scan:{writer.scan_id}"))
        except _REDIS_ERRORS:
            return True  # unknown while Redis is away: keep waiting for it

    async def _view(self, client: aredis.Redis, scan_id: str) -> ScanView | None:
        try:
            return await DataStore(client).get_scan(scan_id)
        except _REDIS_ERRORS as exc:
            self._redis_away(exc)
            return None

    async def _vanished(self, client: aredis.Redis, writer: ScanWriter) -> bool:
        """The scan is gone from a reachable Redis (restarted empty, flushed): wait for its
        publisher to rewrite it; past ``vanish_grace``, end its file. True when ended."""
        with anyio.move_on_after(self.vanish_grace):
            while True:  # polled: Redis announces no key's return
                if await self._scan_exists(client, writer):
                    return False
                await anyio.sleep(min(1.0, self.vanish_grace / 10))
        self.finished.add(writer.scan_id)
        await self._end(writer, "the data Redis lost this scan (restarted or flushed)")
        return True

    async def _end(self, writer: ScanWriter, why: str) -> None:
        try:
            await writer.end_without_redis(why)
        except Exception:
            log.exception("scan %s: could not end %s", writer.number, writer.path)
        await writer.event(f"scan {writer.number}: {why}; {writer.path} ended", level="error")

    def lag(self) -> int:
        """Points published in Redis but not yet on disk, over the scans being written."""
        return sum(writer.lag for writer in self.writers.values())

    async def _publish_status(self, client: aredis.Redis) -> None:
        while True:
            stuck = Storage.stuck()
            try:
                await client.hset(
                    STATUS_KEY,
                    mapping={
                        "lag": self.lag(),
                        "scans": len(self.writers),
                        "blocked": sum(w.blocked for w in self.writers.values()),
                        "stuck": "; ".join(f"{k}: {v}" for k, v in stuck.items()),
                        "pid": os.getpid(),
                        "time": time.time(),
                    },
                )
                self.redis_error = None
            except _REDIS_ERRORS as exc:
                self._redis_away(exc)
            await anyio.sleep(1.0)


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


async def run_writer(redis_url: str, **options: float) -> None:
    """The body of ``blissng writer``: write every saved scan until cancelled."""
    await WriterService(redis_url, **options).run()  # type: ignore[arg-type]
