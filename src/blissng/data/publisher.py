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

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import numpy as np
import redis.asyncio as aredis

from blissng.acquisition.channels import Channel, ChannelSpec

from .document import ScanDocument

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
    redis_timeout: float = 30.0
    """Redis unreachable this long: the scan fails with :class:`DataPublishError`."""
    memory_full_timeout: float = 600.0
    """Redis full of unwritten data this long: the scan fails."""
    socket_timeout: float = 5.0
    """One Redis command taking longer is a lost connection."""
    ack_interval: float = 0.5
    """How often the writer's acknowledgements are read (releases retained entries)."""
    keep_written_bytes: int | None = 64 * 2**20
    """Per channel, written (acknowledged) data kept in the stream before trimming
    (``XTRIM MINID``); ``None`` never trims (the memory guard still may)."""
    close_timeout: float = 30.0
    """Deadline of the shielded close (seal streams, write the end) on abort."""


@dataclasses.dataclass(frozen=True)
class PublisherStatus:
    """What a display shows about a publisher."""

    state: PublisherState
    message: str
    buffered_bytes: int
    retained_bytes: int
    published_points: dict[str, int]


class ScanPublisher:
    """Publishes one scan. Usage (in the scan's task group)::

        publisher = ScanPublisher(redis_urls.data, ScanDocument(...), channels)
        async with publisher:            # creates the scan (state "created"), starts flushing
            for ch in channels: ch.subscribe(publisher)   # or publisher.subscribe(channels)
            await publisher.set_state("prepared")
            ...
            await publisher.close("success")   # seals every stream, state "closed"

    Leaving the block without ``close`` closes with ``aborted`` (cancelled) or ``failed``
    (an exception), in a shielded scope with a deadline.

    ``redis`` is the data Redis URL (the publisher opens its own client) or a client.
    ``channels`` are :class:`Channel` objects (subscribed automatically) or specs.
    """

    def __init__(
        self,
        redis: str | aredis.Redis,
        document: ScanDocument | Mapping[str, Any],
        channels: Iterable[Channel | ChannelSpec],
        *,
        options: PublisherOptions | None = None,
    ) -> None:
        raise NotImplementedError

    # -- identity
    @property
    def scan_id(self) -> str:
        raise NotImplementedError

    @property
    def key(self) -> str:
        """The Redis key of the scan hash (``blissng:scan:<id>``)."""
        raise NotImplementedError

    @property
    def sink(self) -> ScanPublisher:
        """The ChannelSink to subscribe to channels (the publisher itself)."""
        return self

    @property
    def status(self) -> PublisherStatus:
        raise NotImplementedError

    # -- life cycle
    def open(self) -> AbstractAsyncContextManager[ScanPublisher]:
        """``async with publisher.open() as pub:`` (same as ``async with publisher``)."""
        raise NotImplementedError

    async def __aenter__(self) -> ScanPublisher:
        raise NotImplementedError

    async def __aexit__(self, *exc_info: object) -> bool | None:
        raise NotImplementedError

    def subscribe(self, channels: Iterable[Channel]) -> None:
        """Subscribe the publisher to these channels."""
        raise NotImplementedError

    async def set_state(self, state: str) -> None:
        """Record ``prepared``, ``started`` or ``stopped``; returns once it is in Redis."""
        raise NotImplementedError

    async def close(self, end_reason: str = "success", error: str | None = None) -> None:
        """Seal every stream (open channels with what was published), write the end."""
        raise NotImplementedError

    # -- ChannelSink
    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None:
        raise NotImplementedError

    async def end(self, spec: ChannelSpec, length: int) -> None:
        raise NotImplementedError
