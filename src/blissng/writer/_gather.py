"""A scan's channel streams taken apart into the points the disk task writes (no file here).

One ``XREAD`` of the open streams is taken apart in a worker thread: the entries (decoded by
the data layer's :func:`~blissng.data.decode_flat_entries`, the one place the entry format
lives) become raw point bytes per channel, gathered until the reader hands them to the disk
task; points known lost (neither in the file nor in Redis any more) become filler, listed for
the file's ``@lost_points`` and told to the scan's writer. The points stay raw bytes (one
``join`` per channel and write, in the disk thread): the cost per entry is its decoding and a
few lookups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from redis import Redis as SyncRedis

from blissng.data import decode_flat_entries
from blissng.redisdb import text as _text

READ_BYTES = 8 * 2**20  # about this much asked of one stream per XREAD
MAX_COUNT = 1024  # entries asked of one stream per XREAD

# Points for the disk task: ({channel: (first index, raw parts)}, bytes).
Batch = tuple[dict[str, tuple[int, list[bytes]]], int]


@dataclasses.dataclass
class Stream:
    """Where the copy of one channel stands."""

    name: str
    key: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    position: int  # the index of the next point to take
    last_id: str = "0-0"  # the next XREAD starts after this entry
    end: int | None = None  # the seal's length, once seen

    @property
    def finished(self) -> bool:
        return self.end is not None and self.position >= self.end

    @property
    def row_bytes(self) -> int:
        """Bytes of one point (0 for a point of no bytes: a shape with a 0 in it)."""
        return self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64))

    def fill(self, n: int) -> np.ndarray:
        """``n`` points that were lost: NaN for floats, zeros otherwise."""
        array = np.zeros((n, *self.shape), self.dtype)
        if self.dtype.kind in "fc":
            array[...] = np.nan
        return array


class Gatherer:
    """The points read and not yet handed to the disk task, over all channels of a scan.

    ``on_loss(channel, start, stop)`` is told of points ``start..stop-1`` written as filler.
    """

    def __init__(self, on_loss: Callable[[str, int, int], None]) -> None:
        self.on_loss = on_loss
        self.pending: dict[str, tuple[int, list[bytes]]] = {}  # channel: (index, raw parts)
        self.nbytes = 0
        self.count = 16  # entries asked per stream per XREAD, from the largest entry seen
        self.lost: dict[str, list[tuple[int, int]]] = {}
        self._largest = 0

    def take_pending(self) -> Batch:
        """What was gathered, for the disk task; the gatherer starts empty again."""
        work = (self.pending, self.nbytes)
        self.pending, self.nbytes = {}, 0
        return work

    def read(
        self,
        redis: SyncRedis,
        streams: dict[bytes, Stream],
        open_streams: list[Stream],
        block: int | None,
    ) -> bool:
        """One XREAD of the open streams, its entries taken apart. Blocking (a worker thread;
        the reader task awaits it, so nothing else touches what it fills meanwhile)."""
        found: Any = redis.xread(
            {s.key: s.last_id for s in open_streams}, count=self.count, block=block
        )
        for key, entries in found.items() if isinstance(found, dict) else found or ():
            self.take(streams[key], entries)
        return bool(found)

    def take(self, stream: Stream, entries: list[list[Any]]) -> None:
        """Stream entries into points to write, and points known lost into filler."""
        largest = 0
        row = stream.row_bytes
        pending = self.pending.get(stream.name)
        if pending is None:
            pending = self.pending[stream.name] = (stream.position, [])
        parts = pending[1]
        position = stream.position
        added = 0
        for index, n, data in decode_flat_entries(entries):
            if data is None:  # the seal
                stream.end = index
                if position < stream.end:  # trimmed up to its seal
                    stream.position, self.nbytes = position, self.nbytes + added
                    self.lose(stream, position, stream.end)
                    position, added = stream.position, 0
                continue
            if len(data) > largest:
                largest = len(data)
            if index != position:  # resuming inside an entry, or points trimmed away
                if index + n <= position:
                    continue
                if index > position:
                    stream.position, self.nbytes = position, self.nbytes + added
                    self.lose(stream, position, index)
                    position, added = stream.position, 0
                else:
                    data = data[(position - index) * row :]
                    n -= position - index
            parts.append(data)
            added += len(data)
            position += n
        stream.position = position
        self.nbytes += added
        stream.last_id = _text(entries[-1][0]) if entries else stream.last_id
        if largest > self._largest:  # about READ_BYTES per stream per XREAD at most
            self._largest = largest
            self.count = max(1, min(MAX_COUNT, READ_BYTES // largest))

    def list_lost(self, channel: str, ranges: Iterable[tuple[int, int]]) -> None:
        """Points ``[start, stop)`` of ``channel`` are filler (found here, or by a writer of
        the scan before this one): kept as the sorted union of disjoint ranges, so a point
        found lost twice is listed once, however the two ranges overlap."""
        merged: list[tuple[int, int]] = []
        for start, stop in sorted([*self.lost.get(channel, []), *ranges]):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
            else:
                merged.append((start, stop))
        self.lost[channel] = merged

    def lose(self, stream: Stream, start: int, stop: int) -> None:
        """Points ``start..stop-1`` are neither in the file nor in Redis any more (a writer
        restarted without the file an earlier one acknowledged, then Redis trimmed them):
        written as filler, listed for the dataset's ``@lost_points`` (once: a writer that
        takes over a scan may find again what the one before listed) and told to
        ``on_loss``; the rest of the scan goes on."""
        self.list_lost(stream.name, [(start, stop)])
        filler = stream.fill(stop - start).tobytes()
        self.pending.setdefault(stream.name, (start, []))[1].append(filler)
        self.nbytes += len(filler)
        stream.position = stop
        self.on_loss(stream.name, start, stop)
