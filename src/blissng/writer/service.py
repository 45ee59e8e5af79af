"""The writer service: follows scans in Redis and writes them to HDF5, crash-safe.

One task follows the new-scans stream (replaying it from the start, so a restarted writer
finds the scans it had not finished); each saved scan gets a :class:`ScanWriter` in the
service's task group. All h5py work runs in worker threads through one limiter (HDF5 is
serialised anyway), never on the event loop.

Durability protocol (docs/data-model.md, "The writer's acknowledgements"): points are
acknowledged in Redis only after the file was flushed and fsync'ed; a restarted writer
truncates each channel to what was acknowledged and reads the rest again from Redis, which
never trims unacknowledged data. So a SIGKILL at any moment ends, after restart, in a complete
file equal to what was acquired.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import numpy as np
import redis.asyncio as aredis

from blissng.data import (
    ChannelView,
    DataGone,
    DataStore,
    EndOfData,
    ScanView,
    acknowledge,
    mark_scan_written,
)
from blissng.data import keys as data_keys
from blissng.redisdb import async_client
from blissng.redisdb import text as _text

from .nexus import (
    CHUNK_BYTES,
    ScanFile,
    entry_name,
    link_scan,
    rebuild_dataset_file,
    scan_file_path,
)

log = logging.getLogger("blissng.writer")

T = TypeVar("T")

EVENTS_STREAM = "blissng:writer:events"  # errors reported to the sessions that ran the scans
STATUS_KEY = "blissng:writer"  # lag and activity, for displays
FILE_INDEX_TTL = 7 * 86_400  # scan id -> file, for readers after the scan expired
HDF5_RESERVE = 2**20  # room kept for HDF5's own metadata beyond the data


def file_index_key(scan_id: str) -> str:
    return f"blissng:writer:file:{scan_id}"


class WriterError(RuntimeError):
    """A scan cannot be written (disk full, no permission, a damaged file)."""


class WriterService:
    """``await WriterService(url).run()`` until cancelled; ``blissng writer`` runs it."""

    def __init__(
        self,
        redis_url: str,
        *,
        flush_interval: float = 0.5,
        fs_timeout: float = 10.0,
        retry_interval: float = 2.0,
        min_free_bytes: int = 64 * 2**20,
    ) -> None:
        self.redis_url = redis_url
        self.flush_interval = flush_interval  # at most this long between flushes (<= 1 s)
        self.fs_timeout = fs_timeout
        self.retry_interval = retry_interval
        self.min_free_bytes = min_free_bytes
        self.h5_limiter = anyio.CapacityLimiter(1)
        self.writers: dict[str, ScanWriter] = {}
        self.finished: set[str] = set()

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """h5py and file-system calls: a worker thread, one at a time, with a deadline."""
        with anyio.fail_after(self.fs_timeout * 6):
            return await anyio.to_thread.run_sync(fn, *args, limiter=self.h5_limiter)

    async def run(self) -> None:
        client = async_client(self.redis_url)
        try:
            async with DataStore(client) as store, anyio.create_task_group() as tg:
                tg.start_soon(self._publish_status, client)
                async for view in store.follow(since="0"):
                    if view.id in self.writers or view.id in self.finished:
                        continue
                    if not view.info.get("save") or not view.info.get("path"):
                        continue
                    writer = ScanWriter(self, client, view)
                    self.writers[view.id] = writer
                    tg.start_soon(self._write, writer)
        finally:
            await client.aclose()

    async def _write(self, writer: ScanWriter) -> None:
        try:
            await writer.run()
            self.finished.add(writer.scan_id)
        finally:
            self.writers.pop(writer.scan_id, None)

    def lag(self) -> int:
        """Points published in Redis but not yet on disk, over the scans being written."""
        return sum(writer.lag for writer in self.writers.values())

    async def _publish_status(self, client: aredis.Redis) -> None:
        while True:
            await client.hset(
                STATUS_KEY,
                mapping={
                    "lag": self.lag(),
                    "scans": len(self.writers),
                    "pid": os.getpid(),
                    "time": time.time(),
                },
            )
            await anyio.sleep(1.0)


class ScanWriter:
    """Writes one scan: resume, copy channels as they arrive, flush+ack, finish, link."""

    def __init__(self, service: WriterService, client: aredis.Redis, view: ScanView) -> None:
        self.service = service
        self.client = client
        self.view = view
        self.scan_id = view.id
        self.document: Mapping[str, Any] = view.info
        self.path = scan_file_path(self.document)
        self.file = ScanFile(self.path, self.document)
        self.written: dict[str, int] = {}  # points in the file (not yet all flushed)
        self.acked: dict[str, int] = {}
        self.published: dict[str, int] = {}
        self.error_reported = False
        self._room = 0  # bytes we may still write before asking the file system again

    @property
    def lag(self) -> int:
        return sum(max(0, self.published.get(ch, 0) - n) for ch, n in self.acked.items())

    async def run(self) -> None:
        if await self.client.hget(data_keys.ack_key(self.scan_id), "written") == b"1":
            return
        await self._retrying(self._open)
        try:
            async with anyio.create_task_group() as tg:
                channels_done = anyio.Event()
                tg.start_soon(self._flusher, channels_done)
                async with anyio.create_task_group() as readers:
                    for name, channel in self.view.channels.items():
                        readers.start_soon(self._copy_channel, name, channel)
                channels_done.set()
            await self.view.wait_state("closed")
            await self._retrying(self._finish)
        finally:
            with anyio.CancelScope(shield=True):
                await self.service.in_thread(self.file.close)

    async def _retrying(self, step: Callable[[], Any]) -> None:
        """Disk full, no permission: report once, keep the data in Redis, try again."""
        while True:
            try:
                await step()
                return
            except (OSError, RuntimeError, WriterError) as exc:
                # h5py reports failed writes (ENOSPC, EROFS) as RuntimeError.
                await self._report(exc)
                await anyio.sleep(self.service.retry_interval)

    async def _report(self, exc: BaseException) -> None:
        message = f"writer cannot write scan {self.document.get('number')} to {self.path}: {exc}"
        if not self.error_reported:
            log.error("%s", message)
            self.error_reported = True
            with contextlib.suppress(Exception):
                await self.client.hset(data_keys.ack_key(self.scan_id), mapping={"error": message})
                await self.client.xadd(
                    EVENTS_STREAM,
                    {
                        "scan": self.scan_id,
                        "session": str(self.document.get("session", "")),
                        "level": "error",
                        "message": message,
                    },
                    maxlen=1000,
                    approximate=True,
                )

    async def _check_space(self, needed: int = 0) -> None:
        """Refuse before HDF5 runs out of space: a write that fails half-way (ENOSPC) damages
        the file and leaves HDF5 unable even to close it (it crashes at exit)."""
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        stats = await self.service.in_thread(os.statvfs, folder)
        free = stats.f_bavail * stats.f_frsize
        reserve = max(self.service.min_free_bytes, HDF5_RESERVE)
        if free < needed + reserve:
            raise WriterError(
                f"only {free / 2**20:.1f} MB free on {folder} (this write needs "
                f"{(needed + reserve) / 2**20:.1f} MB with its reserve): free some space"
            )
        self._room = free - reserve

    async def _ensure_room(self, nbytes: int) -> None:
        # Chunks are allocated whole: count one more chunk per write beside the data.
        needed = nbytes + CHUNK_BYTES
        if needed > self._room:
            await self._check_space(needed)
        self._room -= needed

    async def _open(self) -> None:
        await self._check_space()
        try:
            lengths = await self.service.in_thread(self.file.open)
        except OSError as exc:
            if not self.path.exists() or "unable to" not in str(exc).lower():
                raise
            # A damaged file from a crash: set it aside and start again from Redis.
            damaged = self.path.with_suffix(f".damaged-{int(time.time())}.h5")
            await self.service.in_thread(os.replace, self.path, damaged)
            log.warning("scan file %s was damaged; kept as %s, rewriting", self.path, damaged)
            lengths = await self.service.in_thread(self.file.open)
        raw = await self.client.hgetall(data_keys.ack_key(self.scan_id))
        acked = {_text(k): int(v) for k, v in raw.items() if _text(k) in lengths}
        for channel, length in lengths.items():
            resume = min(length, acked.get(channel, 0))
            if resume < length:
                await self.service.in_thread(self.file.truncate, channel, resume)
            self.written[channel] = resume
            self.acked[channel] = resume
        if self.error_reported:
            self.error_reported = False
            await self.client.hdel(data_keys.ack_key(self.scan_id), "error")

    async def _copy_channel(self, name: str, channel: ChannelView) -> None:
        cursor = channel.cursor(self.written[name])
        while True:
            try:
                batch = await cursor.read(timeout=1.0)
            except EndOfData:
                return
            except DataGone as exc:
                raise WriterError(
                    f"points of {name} from {self.written[name]} are gone from Redis before "
                    "being written"
                ) from exc
            if len(batch):
                await self._retrying(functools.partial(self._write, name, batch))

    async def _write(self, name: str, batch: np.ndarray) -> None:
        await self._ensure_room(batch.nbytes)
        self.written[name] = await self.service.in_thread(
            self.file.write, name, self.written[name], batch
        )

    async def _flusher(self, channels_done: anyio.Event) -> None:
        """Flush, fsync, then acknowledge, at most ``flush_interval`` apart."""
        while True:
            with anyio.move_on_after(self.service.flush_interval):
                await channels_done.wait()
            for name, channel in self.view.channels.items():
                with contextlib.suppress(DataGone):
                    self.published[name] = await channel.length()
            if self.written != self.acked:
                counts = dict(self.written)
                await self._retrying(lambda: self.service.in_thread(self.file.flush))
                await acknowledge(self.client, self.scan_id, counts)
                self.acked = counts
            if channels_done.is_set():
                return

    async def _finish(self) -> None:
        if self.file.file is None:  # a retry after the file was closed
            await self.service.in_thread(self.file.open)
        await self.view.refresh()
        end_time = await self.client.hget(data_keys.scan_key(self.scan_id), "end_time")
        await self.service.in_thread(
            self.file.finish,
            float(end_time) if end_time else time.time(),
            self.view.end_reason or "success",
            self.view.error,
        )
        # Closed before anyone is told it is written: a written file never changes again.
        await self.service.in_thread(self.file.close)
        await acknowledge(self.client, self.scan_id, dict(self.written))
        self.acked = dict(self.written)
        dataset_file = Path(self.document["path"])
        try:
            await self.service.in_thread(
                link_scan, dataset_file, self.path, entry_name(self.document)
            )
        except OSError:
            # The data set file is only links: rebuild it from the scan files.
            log.warning("data set file %s damaged; rebuilding it", dataset_file)
            damaged = dataset_file.with_suffix(f".damaged-{int(time.time())}.h5")
            await self.service.in_thread(os.replace, dataset_file, damaged)
            await self.service.in_thread(rebuild_dataset_file, dataset_file)
            await self.service.in_thread(
                link_scan, dataset_file, self.path, entry_name(self.document)
            )
        await self.client.set(file_index_key(self.scan_id), str(self.path), ex=FILE_INDEX_TTL)
        await mark_scan_written(self.client, self.scan_id, file=str(self.path))
        log.info("scan %s written to %s", self.document.get("number"), self.path)


async def run_writer(redis_url: str) -> None:
    """The body of ``blissng writer``: write every saved scan until cancelled."""
    await WriterService(redis_url).run()
