"""One scan as its publisher writes it in Redis: created, flushed, trimmed, restored.

A flush is one pipeline on the publisher's own connection (``_wire``): what the channels'
buffers have to send (``_buffer``), the seals, the scan's hash fields and state entries
(``_record``), a trim of written data, the TTL at the very end; every ``ack_interval`` (and
at close, and after an error) the pipeline also reads whether the scan still exists (else it
is restored from memory: a restarted Redis), the writer's acknowledgements and the memory
guard's status. The writes go in one ``MULTI``/``EXEC``: all of a flush or none of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline

from blissng.redisdb import text as _text

from . import _keys as keys
from ._buffer import Buffers, ChannelBuffer
from ._document import ScanDocument
from ._entries import Batch, data_fields, entry_id, entry_index, seal_fields
from ._errors import DataError, DataPublishError
from ._record import ScanRecord
from ._wire import Command, PipelineConnection, ScanLost, is_duplicate, is_oom

log = logging.getLogger("blissng.data.publisher")


class RedisMemoryFull(DataError):
    """Redis refused a write (OOM) or the memory guard says full: hold and retry."""


class RedisScan:
    """The Redis side of one publisher. ``status()`` / ``set_status(state, message)`` are the
    publisher's status, ``wake()`` wakes its flush task."""

    def __init__(
        self,
        client: aredis.Redis,
        document: ScanDocument,
        buffers: Buffers,
        record: ScanRecord,
        *,
        socket_timeout: float,
        ack_interval: float,
        retain_bytes: int,
        status: Callable[[], str],
        set_status: Callable[[Any, str], None],
        wake: Callable[[], None],
    ) -> None:
        self.client = client
        self.document = document
        self.scan_key = keys.scan_key(document.id)
        self.buffers = buffers
        self.record = record
        self.pipeline = PipelineConnection(client, self.scan_key, socket_timeout)
        self.ack_interval = ack_interval
        self.retain_bytes = retain_bytes
        self.status = status
        self.set_status = set_status
        self.wake = wake
        self.guard_full = False
        """The memory guard's last word: data is held while it says full."""
        self.busy = False
        """The last flush carried >= 64 points of a channel: flush less often."""
        self.check_due = True
        self.last_check = -1e9
        self.retain_warned = False

    def scan_keys(self) -> list[str]:
        sid = self.document.id
        return [
            keys.scan_key(sid),
            keys.state_key(sid),
            keys.ack_key(sid),
            *(ch.key for ch in self.buffers),
        ]

    async def create_once(self) -> None:
        if await self.client.exists(self.scan_key):
            if await self.client.hget(self.scan_key, "start_time") == (
                self.record.fields["start_time"].encode()
            ):
                return  # an earlier attempt went through before the connection dropped
            raise DataPublishError(
                f"a scan with id {self.document.id!r} already exists in Redis; scan ids must "
                "be unique"
            )
        async with self.client.pipeline(transaction=True) as pipe:
            self.queue_creation(pipe)
            await pipe.execute()

    def queue_creation(self, pipe: Pipeline) -> None:
        sid = self.document.id
        record = self.record
        pipe.hset(self.scan_key, mapping=record.fields)  # type: ignore[arg-type]
        pipe.xadd(record.state_key(), record.states[0], id=entry_id(0))  # type: ignore[arg-type]
        doc = self.document
        pipe.xadd(
            keys.SCANS_STREAM,
            {
                "id": sid,
                "key": self.scan_key,
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
                    "updated": record.fields["start_time"],
                },
            )
            pipe.expire(dkey, ttl)
            skey = keys.dataset_scans_key(doc.dataset)
            pipe.rpush(skey, sid)
            pipe.expire(skey, ttl)

    async def flush_once(self, closing: bool) -> None:
        """One pipeline: what is pending, plus the writer's acks and the memory status."""
        memory_state = await self.send_pending(closing)
        if memory_state == b"full" and self.buffers.has_data:
            raise RedisMemoryFull(await self.memory_message())

    async def memory_message(self) -> str:
        message = await self.client.hget(keys.MEMORY_STATUS, "message")
        return _text(message) if message else "memory guard state full"

    async def send_pending(self, closing: bool) -> bytes | None:
        """One pipeline of raw RESP commands. The writer's acks, the memory status and the
        existence of the scan (a restart?) are read every ``ack_interval``, at close, and
        after an error."""
        hold_data = self.guard_full
        now_ = anyio.current_time()
        trims = await self.trim_points()
        check = self.check_due or closing or now_ - self.last_check >= self.ack_interval
        self.check_due = True  # until this pipeline succeeds
        commands: list[Command] = []
        if check:
            commands.append((b"EXISTS", self.scan_key))
            commands.append((b"HGETALL", keys.ack_key(self.document.id)))
            commands.append((b"HGET", keys.MEMORY_STATUS, b"state"))
        first = len(commands)
        sent_data: list[tuple[ChannelBuffer, list[Batch]]] = []
        seals: list[ChannelBuffer] = []
        for ch in self.buffers:
            if not hold_data and ch.has_data:
                entries = self.buffers.outgoing(ch)
                ch.inflight = entries
                for entry in entries:
                    commands.append(
                        (
                            b"XADD",
                            ch.key,
                            entry_id(entry.index),
                            *data_fields(entry.n, entry.payload),
                        )
                    )
                sent_data.append((ch, entries))
            if ch.end is not None and not ch.seal_sent and (not hold_data or not ch.has_data):
                commands.append((b"XADD", ch.key, entry_id(ch.end), *seal_fields(ch.end)))
                seals.append(ch)
            if ch in trims:
                commands.append((b"XTRIM", ch.key, b"MINID", trims[ch]))
        record = self.record
        sent_fields = {f: record.fields[f] for f in record.dirty}
        if sent_fields:
            flat = (x for item in sent_fields.items() for x in item)
            commands.append((b"HSET", self.scan_key, *flat))
        sealed = all(ch.seal_sent or ch in seals for ch in self.buffers)
        states = record.sendable_states(sealed)
        for seq in states:
            fields = record.states[seq]
            commands.append(
                (
                    b"XADD",
                    record.state_key(),
                    entry_id(seq),
                    *(x for item in fields.items() for x in item),
                )
            )
        expire = record.expire_due(states, sealed)
        if expire:
            assert record.expire_ttl is not None
            for key in self.scan_keys():
                commands.append((b"EXPIRE", key, record.expire_ttl))
        if not commands:
            self.check_due = False
            return b"full" if self.guard_full else None
        writes = len(commands) - first
        if writes:
            # One transaction: all of this flush or none of it. Readers never see a channel
            # ahead of another flush's points, and an OOM refusal cannot leave a gap (a
            # refused entry followed by an accepted one) that a retry could not fill.
            commands.insert(first, (b"MULTI",))
            commands.append((b"EXEC",))
        assert self.pipeline is not None
        try:
            results = await self.pipeline.execute(commands)
        except ScanLost:
            await self.restore()
            self.wake()
            return b"full" if self.guard_full else None
        acks: Any = None
        memory_state: Any = b"full" if self.guard_full else None
        if check:
            exists, acks, memory_state = results[0], results[1], results[2]
            for value in (exists, acks, memory_state):
                if isinstance(value, Exception):
                    raise value
            if not exists:
                await self.restore()
                self.wake()
                return memory_state if isinstance(memory_state, bytes) else None
            self.last_check = now_
        self.check_due = False
        replies: list[Any] = []
        if writes:
            executed = results[-1]
            if isinstance(executed, Exception):  # EXECABORT: nothing was applied
                queued = [r for r in results[first + 1 : -1] if isinstance(r, Exception)]
                refusal = next((e for e in queued if is_oom(e)), None)
                if refusal is not None or is_oom(executed):
                    self.check_due = True
                    raise RedisMemoryFull(str(refusal or executed))
                refused = queued[0] if queued else executed
                raise DataPublishError(f"scan {self.document.id}: Redis refused a write: {refused}")
            replies = list(executed)
        errors = [r for r in replies if isinstance(r, Exception) and not is_duplicate(r)]
        if errors:
            raise DataPublishError(f"scan {self.document.id}: Redis refused a write: {errors[0]}")
        # Everything in this pipeline is in Redis.
        busy = False
        for ch, entries in sent_data:
            busy = busy or entries[-1].stop - entries[0].index >= 64
            self.buffers.confirm(ch, entries)
        self.busy = busy
        self.warn_once_retain_overflow()
        for ch in seals:
            ch.seal_sent = True
        for ch, minid in trims.items():
            self.buffers.trimmed(ch, entry_index(minid))
        record.sent(sent_fields, states, expire)
        if isinstance(acks, list):  # RESP2
            acks = dict(zip(acks[::2], acks[1::2], strict=True))
        if isinstance(acks, dict):  # (RESP3 replies a map)
            self.buffers.acknowledge(_counts(acks))
        full = memory_state == b"full"
        if full:
            self.set_status(
                "memory_full",
                "the data Redis is full of data not yet written to disk: scan data is held "
                "(the acquisition waits once the buffer is full) until the writer catches up",
            )
        elif self.guard_full and self.status() == "memory_full":
            log.warning("scan %s: the data Redis has room again; publishing", self.document.id)
            self.set_status("ok", "")
        self.guard_full = full
        return memory_state if isinstance(memory_state, bytes) else None

    def warn_once_retain_overflow(self) -> None:
        if self.buffers.retain_overflowed and self.document.save and not self.retain_warned:
            self.retain_warned = True
            log.warning(
                "scan %s: the writer is more than %d MB behind; points it has not written "
                "would be lost if the data Redis restarted now",
                self.document.id,
                self.retain_bytes // 2**20,
            )

    async def trim_points(self) -> dict[ChannelBuffer, str]:
        """The MINID of each channel to trim: the entry holding its target point (never past
        it: an entry also holding unwritten points must stay)."""
        trims: dict[ChannelBuffer, str] = {}
        for ch in self.buffers:
            if ch.trim_target is None:
                continue
            holder: Any = await self.client.xrevrange(ch.key, entry_id(ch.trim_target), "-", 1)
            if holder and entry_index(holder[0][0]) > ch.trimmed_to:
                trims[ch] = _text(holder[0][0])
            else:
                ch.trim_target = None
        return trims

    async def restore(self) -> None:
        """Redis lost the scan (restart, flush): rewrite it from memory, in one transaction.

        The streams are deleted first: they hold only what this publisher wrote since the
        loss, and everything not on disk is retained here.
        """
        log.warning(
            "scan %s: the data Redis lost this scan (restart?); republishing %d kB retained",
            self.document.id,
            self.buffers.retained_bytes // 1024,
        )
        record = self.record
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*self.scan_keys())
            self.queue_creation(pipe)
            for seq in range(1, record.states_sent):
                pipe.xadd(record.state_key(), record.states[seq], id=entry_id(seq))  # type: ignore[arg-type]
            sent_hash = {f: v for f, v in record.fields.items() if f not in record.dirty}
            pipe.hset(self.scan_key, mapping=sent_hash)  # type: ignore[arg-type]
            acks = {ch.name: str(ch.acked) for ch in self.buffers if ch.acked}
            if acks:
                pipe.hset(keys.ack_key(self.document.id), mapping=acks)  # type: ignore[arg-type]
            for ch in self.buffers:
                for entry in ch.retained:
                    pipe.execute_command(
                        "XADD", ch.key, entry_id(entry.index), *data_fields(entry.n, entry.payload)
                    )
                if ch.seal_sent:
                    assert ch.end is not None
                    pipe.execute_command("XADD", ch.key, entry_id(ch.end), *seal_fields(ch.end))
            if record.expire_sent and record.expire_ttl is not None:
                for key in self.scan_keys():
                    pipe.expire(key, record.expire_ttl)
            await pipe.execute()


def _counts(acks: Mapping[bytes, bytes]) -> dict[str, int]:
    """The ack hash's channel fields (decimal counts; the reserved fields are not)."""
    counts: dict[str, int] = {}
    for raw_name, raw_value in acks.items():
        try:
            counts[raw_name.decode()] = int(raw_value)
        except ValueError:
            continue
    return counts
