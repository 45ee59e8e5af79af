"""One scan written to its file: open (or resume), copy, flush and acknowledge, finish, link.

The copy reads every channel stream of the scan with one ``XREAD`` (docs/data-model.md: entry
ID = index of the batch's first point, a seal at the end), gathers what arrived and writes it
in one worker-thread call for all channels; at most ``flush_interval`` apart it flushes and
``fsync``s the file, and only then acknowledges the counts in Redis. So the acknowledgement
still means "on disk" while the cost per point is a few array copies, not a thread hop per
batch per channel. Taking the entries apart into points is ``_gather``'s; the file's layout
and its name and place are ``_nexus``'s and ``_files``'s.

Every blocking call goes to ``_storage.Storage`` (a thread per call, a deadline, the file
system marked stuck when it does not answer). A failing step is reported once on the scan's
ack ``error`` and to its session (``blissng:writer:events``), retried, and the report is
removed when the step succeeds again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import redis.asyncio as aredis
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from blissng.data import (
    ScanView,
    acknowledge,
    channel_label,
    description_dtype,
    mark_scan_written,
)
from blissng.data import keys as data_keys
from blissng.redisdb import text as _text
from blissng.scans import NotEnoughSpace, check_free_space, first_error, min_free_bytes
from blissng.threads import run_in_thread

from ._errors import ForeignScanFile, WriterError
from ._files import choose_scan_file, entry_name, link_scan, rebuild_dataset_file, scan_file_path
from ._gather import Batch, Gatherer, Stream
from ._nexus import CHUNK_BYTES, ScanFile
from ._storage import free_bytes

if TYPE_CHECKING:
    from ._service import WriterService

log = logging.getLogger("blissng.writer")

EVENTS_STREAM = "blissng:writer:events"  # errors reported to the sessions that ran the scans
FILE_INDEX_TTL = 7 * 86_400  # scan id -> file, for readers after the scan expired
HDF5_RESERVE = 2**20  # room kept for HDF5's own metadata beyond the data
WRITE_BYTES = 2**20  # points gathered beyond this are handed to the disk task at once


# A batch of points for the disk task, or None: flush and acknowledge what was written before it.
_DiskWork = Batch | None


def file_index_key(scan_id: str) -> str:
    return f"blissng:writer:file:{scan_id}"


class ScanWriter:
    """Writes one scan (the service runs one per saved scan, isolated from the others)."""

    def __init__(self, service: WriterService, client: aredis.Redis, view: ScanView) -> None:
        self.service = service
        self.client = client
        self.view = view
        self.scan_id = view.id
        self.document: Mapping[str, Any] = view.info
        self.number = self.document.get("number")
        self.session = str(self.document.get("session", ""))
        self.path = scan_file_path(self.document)
        self.file: ScanFile | None = None
        self.file_system = ""
        self.written: dict[str, int] = {}  # points in the file (not yet all flushed)
        self.acked: dict[str, int] = {}
        self.published: dict[str, int] = {}
        self._gathered = Gatherer(self._lost)  # its ``lost``: points written as filler
        self.reported: str | None = None  # the error shown on the ack hash now
        self._reported_key: str | None = None
        self._room = 0  # bytes we may still write before asking the file system again
        self._losses: list[str] = []  # lost points to report

    # ------------------------------------------------------------------ status

    @property
    def lag(self) -> int:
        """Points published in Redis and not yet acknowledged on disk."""
        return sum(max(0, n - self.acked.get(name, 0)) for name, n in self.published.items())

    @property
    def blocked(self) -> bool:
        return self.reported is not None

    async def watch_published(self) -> None:
        """Keep ``published`` current (for ``lag``), even while the scan cannot be written."""
        keys = {name: ch["key"] for name, ch in self.document["channels"].items()}
        while True:
            with contextlib.suppress(Exception):  # Redis away: the writer reports it elsewhere
                async with self.client.pipeline(transaction=False) as pipe:
                    for key in keys.values():
                        pipe.xrevrange(key, "+", "-", count=1)
                    replies = await pipe.execute()
                for name, reply in zip(keys, replies, strict=True):
                    if reply:
                        (entry_id, fields), *_ = reply
                        index = data_keys.entry_index(entry_id)
                        self.published[name] = (
                            int(fields[b"end"]) if b"end" in fields else index + int(fields[b"n"])
                        )
            await anyio.sleep(self.service.flush_interval)

    def carry_on_from(self, earlier: ScanWriter) -> None:
        """Take over from the writer of the same scan that failed: what it reported (so a
        problem is not reported twice, and its recovery is) and the counts it saw published.
        The points it wrote as filler this one reads back from the file (``_open``)."""
        self.reported, self._reported_key = earlier.reported, earlier._reported_key
        self.published = earlier.published

    # ------------------------------------------------------------------ reporting

    async def report(self, exc: BaseException, *, level: str = "error") -> None:
        """Tell the session that ran the scan (once per distinct problem), on the scan's ack
        ``error`` and on ``blissng:writer:events``."""
        message = f"writer cannot write scan {self.number} to {self.path}: {exc}"
        # Once per problem: a stuck file system's report changes only with the time it ran.
        key = getattr(exc, "file_system", None) or message
        if key == self._reported_key:
            return
        self.reported, self._reported_key = message, key
        log.error("%s", message)
        await self.event(message, level=level, ack_error=True)

    async def event(self, message: str, *, level: str, ack_error: bool = False) -> None:
        event = {"scan": self.scan_id, "session": self.session, "level": level, "message": message}
        with contextlib.suppress(Exception):  # Redis away: the log line above says it
            # One transaction: whoever sees the ack error sees the event too.
            async with self.client.pipeline(transaction=True) as pipe:
                if ack_error:
                    pipe.hset(data_keys.ack_key(self.scan_id), mapping={"error": message})
                pipe.xadd(EVENTS_STREAM, event, maxlen=1000, approximate=True)  # type: ignore[arg-type]
                await pipe.execute()

    async def recovered(self) -> None:
        """The step that failed succeeded: the ack ``error`` goes (docs: removed on recovery)."""
        if self.reported is None:
            return
        await self.client.hdel(data_keys.ack_key(self.scan_id), "error")
        log.info("scan %s: writing again (%s)", self.number, self.path)
        await self.event(f"writer: scan {self.number} is being written again", level="info")
        self.reported = self._reported_key = None

    async def retrying(self, step: Callable[[], Awaitable[Any]]) -> None:
        """Disk full, no permission, a stuck file system: report, keep the data in Redis, try
        again every ``retry_interval``; the report goes when the step succeeds."""
        while True:
            try:
                await step()
            except (OSError, RuntimeError, WriterError) as exc:
                # h5py reports failed writes (ENOSPC, EROFS) as RuntimeError or OSError.
                await self.report(exc)
                await anyio.sleep(self.service.retry_interval)
                continue
            await self.recovered()
            return

    # ------------------------------------------------------------------ the scan

    async def run(self) -> None:
        acked = await self.client.hgetall(data_keys.ack_key(self.scan_id))
        if acked.get(b"written") == b"1":
            return
        # Nothing acknowledged yet (a new scan): every channel starts at 0 whatever a file
        # holds, so Redis is read while the file is created (tens of ms per scan); else the
        # file says where each channel resumes, and is opened first.
        fresh = not any(int(acked.get(name.encode(), 0)) for name in self.document["channels"])
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.watch_published)  # lag, even while the scan cannot be written
                try:
                    if fresh:
                        self.written = dict.fromkeys(self.document["channels"], 0)
                    else:
                        await self.retrying(self._open)
                    await self._copy(opening=fresh)
                    if self.view.state != "closed":
                        await self.view.wait_state("closed")
                    await self.retrying(self._finish)
                finally:
                    tg.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await self.close()
        except BaseExceptionGroup as group:
            raise first_error(group) from None

    async def _call(self, fn: Callable[..., Any], *args: Any, what: str) -> Any:
        return await self.service.storage.call(self.file_system, fn, *args, what=what)

    async def close(self) -> None:
        """Close the file (shielded callers; a stuck file system leaves it to its thread)."""
        if self.file is None or self.file.file is None:
            return
        with contextlib.suppress(Exception), anyio.move_on_after(self.service.storage.timeout):
            await self._call(self.file.close, what=f"closing {self.path}")

    @property
    def _reserve(self) -> int:
        """Free space kept on the scan's disk (the scans layer's rule and figure)."""
        reserve = self.service.min_free_bytes
        return max(min_free_bytes(self.document) if reserve is None else reserve, HDF5_RESERVE)

    async def _ensure_room(self, nbytes: int) -> None:
        """Refuse before HDF5 runs out of space: a write that fails half-way (ENOSPC) damages
        the file. The rule and the figure are the scans layer's (``blissng.scans``)."""
        needed = nbytes + CHUNK_BYTES  # chunks are allocated whole: one more per write
        if needed > self._room:
            folder = self.path.parent
            free = await self._call(free_bytes, folder, what=f"statvfs {folder}")
            check_free_space(folder, free, min_free=self._reserve, needed=needed)
            self._room = free - self._reserve
        self._room -= needed

    async def _open(self) -> None:
        """Free space checked, the file chosen (never another scan's), opened or resumed:
        one call in a worker thread."""
        self.file_system = await self.service.storage.file_system(self.path.parent)
        opened: _Opened = await self._call(
            _open_scan_file, self.document, self._reserve, what=f"opening {self.path}"
        )
        primary = scan_file_path(self.document)
        if opened.file.path != primary and opened.file.path != self.path:
            message = (
                f"scan {self.number}: {primary} holds another scan (its number was used "
                f"twice in this directory); it is kept untouched and this scan goes to "
                f"{opened.file.path}"
            )
            log.warning("%s", message)
            await self.event(message, level="warning")
        if opened.damaged is not None:
            log.warning("scan file was damaged; kept as %s, rewriting", opened.damaged)
        self.file, self.path = opened.file, opened.file.path
        for channel, ranges in opened.lost.items():  # an earlier writer's: resuming after them
            self._gathered.list_lost(channel, ranges)
        self._room = opened.free - self._reserve
        await self.client.set(file_index_key(self.scan_id), str(self.path), ex=FILE_INDEX_TTL)
        raw = await self.client.hgetall(data_keys.ack_key(self.scan_id))
        lengths = opened.lengths
        acked = {_text(k): int(v) for k, v in raw.items() if _text(k) in lengths}
        for channel, length in lengths.items():
            resume = min(length, acked.get(channel, 0))
            if resume < length:
                await self._call(
                    self.file.truncate, channel, resume, what=f"truncating {self.path}"
                )
            self.written[channel] = resume
            self.acked[channel] = resume

    # ------------------------------------------------------------------ copy

    async def _copy(self, *, opening: bool) -> None:
        """Every channel from where the file stands to its seal; flushed and acknowledged at
        most ``flush_interval`` apart.

        Two tasks: this one reads Redis (on the loop) while :meth:`_disk` writes what was
        read before (in a worker thread), so reading and writing overlap; the bounded stream
        between them holds at most two batches of :data:`WRITE_BYTES`. A flush is queued
        behind the writes it covers, so what it acknowledges is on disk. ``opening``: the
        disk task opens the file first (a new scan), while the first points are read."""
        streams = {}
        for name, description in self.document["channels"].items():
            stream = Stream(
                name,
                description["key"],
                description_dtype(description),
                tuple(description.get("shape") or ()),
                self.written[name],
            )
            await self._locate(stream)
            streams[stream.key.encode()] = stream
        send, receive = anyio.create_memory_object_stream[_DiskWork](2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._disk, receive, opening)
            async with send:
                await self._read(streams, send)

    async def _read(
        self, streams: dict[bytes, Stream], disk: MemoryObjectSendStream[_DiskWork]
    ) -> None:
        interval = self.service.flush_interval
        next_flush = anyio.current_time() + interval
        # A blocking client in a worker thread: redis-py's asyncio reader moves MBs of points
        # at a third of the speed (buffer copies, pauses of the transport), and entries are
        # taken apart there too, off the loop.
        redis = self.service.stream_reader()
        try:
            while True:
                open_streams = [s for s in streams.values() if not s.finished]
                if not open_streams:
                    break
                wait = next_flush - anyio.current_time()
                block = int(wait * 1000) if wait >= 0.001 else None
                # No resource nor timeout: nothing to serialise, and the call bounds itself
                # (XREAD's BLOCK, then the client's socket timeout: Redis away).
                found = await run_in_thread(
                    self._gathered.read, redis, streams, open_streams, block, abandon_on_cancel=True
                )
                await self._report_losses()
                flush = anyio.current_time() >= next_flush
                pending = self._gathered.nbytes
                if pending and (pending >= WRITE_BYTES or not found or flush):
                    await disk.send(self._gathered.take_pending())
                if flush:
                    await disk.send(None)
                    next_flush = anyio.current_time() + interval
        finally:
            redis.close()
        await self._report_losses()
        if self._gathered.nbytes:
            await disk.send(self._gathered.take_pending())
        if await self.view.refresh() != "closed":
            await disk.send(None)  # else the end's own flush acknowledges the last points

    async def _report_losses(self) -> None:
        while self._losses:
            await self.event(self._losses.pop(0), level="error")

    def _lost(self, channel: str, start: int, stop: int) -> None:
        """Points of ``channel`` written as filler (told by the gatherer, in the reading
        thread): logged, and reported to the session by the reader task."""
        label = channel_label(self.document, channel)
        message = (
            f"scan {self.number}: points {start}..{stop - 1} of {label} are lost (acknowledged "
            f"by an earlier writer in a file that no longer has them, and gone from Redis); "
            f"{self.path} marks them in @lost_points and holds the rest"
        )
        log.error("%s", message)
        self._losses.append(message)

    async def _disk(self, work: MemoryObjectReceiveStream[_DiskWork], opening: bool) -> None:
        """Writes (a batch) and flushes (``None``), in the order they were queued; the file
        opened first when ``opening``."""
        async with work:
            if opening:
                await self.retrying(self._open)
            async for item in work:
                if item is None:
                    await self.retrying(self._flush)
                else:
                    await self.retrying(functools.partial(self._write_batch, *item))

    async def _locate(self, stream: Stream) -> None:
        """Start reading at the entry holding the stream's position (not at its start)."""
        if stream.position == 0:
            return
        holder: Any = await self.client.xrevrange(
            stream.key, data_keys.entry_id(stream.position), "-", count=1
        )
        if holder:
            stream.last_id = f"{data_keys.entry_index(holder[0][0])}-0"

    async def _write_batch(self, batch: Mapping[str, tuple[int, list[bytes]]], nbytes: int) -> None:
        assert self.file is not None
        await self._ensure_room(nbytes)
        lengths = await self._call(self.file.write_raw, batch, what=f"writing {self.path}")
        self.written.update(lengths)

    async def _flush(self) -> None:
        """Flush and fsync, then acknowledge what is on disk."""
        if self.written == self.acked:
            return
        assert self.file is not None
        counts = dict(self.written)
        if self._gathered.lost:  # on disk before their filler is acknowledged (see _open)
            lost = {name: list(ranges) for name, ranges in dict(self._gathered.lost).items()}
            await self._call(self.file.mark_lost, lost, what=f"listing lost points in {self.path}")
        await self._call(self.file.flush, what=f"flushing {self.path}")
        await acknowledge(self.client, self.scan_id, counts)
        self.acked = counts

    # ------------------------------------------------------------------ finish

    async def _finish(self) -> None:
        assert self.file is not None
        if self.view.state != "closed":  # a retry: read the end again
            await self.view.refresh()
        error = self.view.error or None
        if self._gathered.lost:
            error = "; ".join(filter(None, [error, "some points were lost: see @lost_points"]))
        # Closed before anyone is told it is written: a written file never changes again.
        await self._call(
            _end_and_link,
            self.file,
            self.view.end_time or time.time(),
            self.view.end_reason or "success",
            error,
            self._gathered.lost,
            self.scan_id,
            what=f"finishing {self.path}",
        )
        await acknowledge(self.client, self.scan_id, dict(self.written))
        self.acked = dict(self.written)
        await mark_scan_written(self.client, self.scan_id, file=str(self.path))
        log.info("scan %s written to %s", self.number, self.path)

    async def end_without_redis(self, why: str) -> None:
        """The data Redis lost this scan (or cannot be reached as the writer stops): end the
        file with what it holds and why, and link it, so it tells the truth."""
        if self.file is None:
            return  # never opened: nothing on disk
        lengths: dict[str, int] = await self._call(self._lengths, what="reading lengths")
        if self._gathered.nbytes:  # read from Redis before it went: written too
            with contextlib.suppress(NotEnoughSpace):
                await self._write_batch(*self._gathered.take_pending())
            lengths = await self._call(self._lengths, what="reading lengths")
        npoints = self.document.get("npoints") or "?"
        held = min(lengths.values(), default=0)
        error = f"{why}: the file holds {held} of {npoints} points"
        await self._call(
            _end_and_link,
            self.file,
            time.time(),
            "failed",
            error,
            self._gathered.lost,
            self.scan_id,
            what=f"ending {self.path}",
        )
        log.error("scan %s: %s; %s ended and linked", self.number, error, self.path)

    def _lengths(self) -> dict[str, int]:
        assert self.file is not None
        if self.file.file is None:
            self.file.open()
        return self.file.lengths()


@dataclasses.dataclass
class _Opened:
    file: ScanFile
    lengths: dict[str, int]
    free: int
    damaged: Path | None
    lost: dict[str, list[tuple[int, int]]]  # the points an earlier writer listed as lost


def _open_scan_file(document: Mapping[str, Any], reserve: int) -> _Opened:
    """Check the free space, choose the scan's file (never another scan's), open or resume
    it; a file damaged by a crash is set aside and started again. Blocking."""
    folder = scan_file_path(document).parent
    free = free_bytes(folder)
    check_free_space(folder, free, min_free=reserve)
    file = ScanFile(choose_scan_file(document), document)
    damaged = None
    try:
        lengths = file.open()
    except ForeignScanFile:
        raise
    except OSError as exc:
        if "unable to" not in str(exc).lower():
            raise
        damaged = file.path.with_suffix(f".damaged-{int(time.time())}.h5")
        os.replace(file.path, damaged)
        lengths = file.open()
    return _Opened(file, lengths, free, damaged, file.lost_points())


def _end_and_link(
    file: ScanFile,
    end_time: float,
    end_reason: str,
    error: str | None,
    lost: Mapping[str, list[tuple[int, int]]],
    scan_id: str,
) -> str:
    """Write the end of the scan, close its file, link it from the data set file (rebuilt
    from the scan files if damaged); the link's name. Blocking."""
    if file.file is None:  # a retry after the file was closed
        file.open()
    file.finish(end_time, end_reason, error, lost)
    file.close()
    dataset_file = Path(file.document["path"])
    entry = entry_name(file.document)
    try:
        return link_scan(dataset_file, file.path, entry, scan_id)
    except OSError:
        # The data set file is only links: rebuild it from the scan files.
        log.warning("data set file %s damaged; rebuilding it", dataset_file)
        os.replace(dataset_file, dataset_file.with_suffix(f".damaged-{int(time.time())}.h5"))
        rebuild_dataset_file(dataset_file)
        return link_scan(dataset_file, file.path, entry, scan_id)
