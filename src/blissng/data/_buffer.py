"""The publisher's memory of each channel's points, without Redis: pure and testable alone.

A point goes through three stages here (docs/decisions/0002-redis-restart.md):

1. *pending*: put by the acquisition, not yet sent. Counted against the buffer budget: above
   it, ``put`` waits (backpressure).
2. *in flight*: sent at least once and not confirmed. Consecutive pending batches are merged
   into entries of at most ``max_entry_bytes``, and an entry once sent is resent with the SAME
   boundaries, so that "this entry ID exists in Redis" always means "this very entry is there"
   (a retried ``XADD`` of an existing ID is refused by Redis: nothing is ever duplicated).
3. *retained*: in Redis, and not yet acknowledged on disk by the writer. Kept (within the
   retain budget, oldest dropped first) to be republished if Redis loses the scan; released as
   the writer's acknowledgements come. Written points beyond ``keep_written_bytes`` per channel
   become a trim target (``XTRIM MINID``).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ._entries import Batch
from ._errors import DataPublishError


@dataclasses.dataclass(eq=False)
class ChannelBuffer:
    """One channel: its points from ``put`` until the writer has them on disk."""

    name: str
    key: str
    point_bytes: int
    """Bytes of one point (at least 1): the unit of the keep-written budget."""
    pending: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)
    inflight: list[Batch] = dataclasses.field(default_factory=list)
    published: int = 0
    """Points confirmed in Redis (the index of the first one that is not)."""
    next_index: int = 0
    """The index the next put must start at."""
    end: int | None = None
    """The length to seal the stream at (set by ``end()`` or by closing the scan)."""
    seal_sent: bool = False
    retained: collections.deque[Batch] = dataclasses.field(default_factory=collections.deque)
    acked: int = 0
    """Points the writer acknowledged on disk."""
    trim_target: int | None = None
    """Written points before this index may be trimmed from the stream."""
    trimmed_to: int = 0
    """The stream starts at the entry holding this index."""

    @property
    def has_data(self) -> bool:
        """Points not yet confirmed in Redis."""
        return bool(self.pending or self.inflight)

    @property
    def sealed(self) -> bool:
        """Every point and the seal are in Redis."""
        return self.seal_sent and not self.has_data


class Buffers:
    """Every channel's buffer, and the two budgets they share.

    ``retain_bytes``: sent-but-not-on-disk points kept for a Redis restart (the oldest are
    dropped past it, with a warning once); ``keep_written_bytes``: per channel, written points
    left in the stream before trimming (None: never trim).
    """

    def __init__(
        self,
        channels: Iterable[tuple[str, str, int]],
        *,
        max_entry_bytes: int,
        retain_bytes: int,
        keep_written_bytes: int | None,
    ) -> None:
        self.channels: dict[str, ChannelBuffer] = {}
        for name, key, point_bytes in channels:
            if name in self.channels:
                raise ValueError(f"two channels named {name!r}")
            self.channels[name] = ChannelBuffer(name, key, max(1, point_bytes))
        self.max_entry_bytes = max_entry_bytes
        self.retain_bytes = retain_bytes
        self.keep_written_bytes = keep_written_bytes
        self.buffered = 0
        """Bytes pending or in flight (what backpressure bounds)."""
        self.retained_bytes = 0
        self.retain_overflowed = False
        """The retain budget was exceeded once (points were dropped from it)."""

    def __iter__(self) -> Iterator[ChannelBuffer]:
        return iter(self.channels.values())

    # -- the acquisition's side ------------------------------------------------------------

    def put(self, name: str, index: int, n: int, payload: bytes) -> None:
        """Queue ``n`` points (``payload``) of channel ``name`` starting at ``index``."""
        ch = self.channels.get(name)
        if ch is None or index != ch.next_index or ch.end is not None:
            raise self.refusal(ch, name, index)
        ch.pending.append((n, payload))
        ch.next_index = index + n
        self.buffered += len(payload)

    def refusal(self, ch: ChannelBuffer | None, name: str, index: int) -> DataPublishError:
        """Why a put of ``name`` at ``index`` is refused."""
        if ch is None:
            return DataPublishError(f"channel {name!r} was not declared to the publisher")
        if ch.end is not None:
            return DataPublishError(f"channel {name!r} has ended")
        return DataPublishError(
            f"channel {name!r} got a batch at index {index}, expected {ch.next_index} "
            "(points must arrive in order, without gap)"
        )

    def end(self, name: str, length: int) -> bool:
        """The channel has ``length`` points, no more; True if that is news."""
        ch = self.channels.get(name)
        if ch is None:
            raise self.refusal(None, name, 0)
        if length != ch.next_index:
            raise DataPublishError(
                f"channel {name!r} ends at {length} points but {ch.next_index} were emitted"
            )
        if ch.end is not None:
            return False
        ch.end = length
        return True

    def end_all(self) -> None:
        """Closing the scan: channels still open end with what was put."""
        for ch in self:
            if ch.end is None:
                ch.end = ch.next_index

    # -- the Redis side (what to send, what was confirmed) ----------------------------------

    @property
    def has_data(self) -> bool:
        return any(ch.has_data for ch in self)

    def outgoing(self, ch: ChannelBuffer) -> list[Batch]:
        """The channel's entries to send: those already tried (unchanged), then its pending
        batches merged into entries of at most ``max_entry_bytes``."""
        entries = ch.inflight
        index = entries[-1].stop if entries else ch.published
        group: list[bytes] = []
        group_n = group_bytes = 0
        for n, payload in ch.pending:
            if group and group_bytes + len(payload) > self.max_entry_bytes:
                entries.append(Batch(index, group_n, _join(group)))
                index += group_n
                group, group_n, group_bytes = [], 0, 0
            group.append(payload)
            group_n += n
            group_bytes += len(payload)
        if group:
            entries.append(Batch(index, group_n, _join(group)))
        ch.pending = []
        ch.inflight = entries
        return entries

    def confirm(self, ch: ChannelBuffer, entries: list[Batch]) -> None:
        """Redis has ``entries`` (what :meth:`outgoing` gave): retained until on disk."""
        assert ch.inflight is entries
        ch.inflight = []
        for entry in entries:
            size = len(entry.payload)
            self.buffered -= size
            ch.published = entry.stop
            if entry.stop > ch.acked:
                ch.retained.append(entry)
                self.retained_bytes += size
        self._enforce_retain_budget()

    def _enforce_retain_budget(self) -> None:
        while self.retained_bytes > self.retain_bytes:
            oldest = min((ch for ch in self if ch.retained), key=lambda c: c.retained[0].index)
            self.retained_bytes -= len(oldest.retained.popleft().payload)
            self.retain_overflowed = True

    def acknowledge(self, acks: Mapping[str, int]) -> None:
        """The writer's counts of points on disk: release what they cover, and mark what
        the stream may lose (beyond ``keep_written_bytes`` of written points)."""
        keep = self.keep_written_bytes
        for name, acked in acks.items():
            ch = self.channels.get(name)
            if ch is None or acked <= ch.acked:
                continue
            ch.acked = acked
            while ch.retained and ch.retained[0].stop <= acked:
                self.retained_bytes -= len(ch.retained.popleft().payload)
            if keep is None:
                continue
            keep_points = max(1, keep // ch.point_bytes)
            target = acked - keep_points
            if target > ch.trimmed_to + max(1, keep_points // 4):  # not for every ack
                ch.trim_target = target

    def trimmed(self, ch: ChannelBuffer, first_index: int) -> None:
        """The stream now starts at the entry holding ``first_index``."""
        ch.trim_target = None
        ch.trimmed_to = max(ch.trimmed_to, first_index)


def point_bytes(dtype: np.dtype[Any], shape: tuple[int, ...]) -> int:
    return max(1, dtype.itemsize * int(np.prod(shape, dtype=int)))


def _join(parts: list[bytes]) -> bytes:
    return parts[0] if len(parts) == 1 else b"".join(parts)
