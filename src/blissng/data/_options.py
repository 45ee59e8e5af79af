"""The publisher's tuning and the status it reports (``blissng.data`` exports both)."""

from __future__ import annotations

import dataclasses
from typing import Literal

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
