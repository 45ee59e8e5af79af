"""The publisher's channel buffers, without Redis (blissng.data._buffer): whatever the order of
puts, failed and successful flushes and the writer's acknowledgements, what reaches Redis is
every point once, in order, in entries that a retry resends unchanged, and what is retained for
a Redis restart is exactly what the writer has not acknowledged (within its budget)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blissng.data import DataPublishError
from blissng.data._buffer import Buffers
from blissng.data._entries import Batch

POINT = 8  # bytes per point of the channels below

operation = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 1), st.integers(1, 40)),
    st.tuples(st.just("flush"), st.booleans(), st.just(0)),  # True: Redis took it
    st.tuples(st.just("ack"), st.integers(0, 1), st.integers(0, 200)),
)


class Model:
    """What went through the buffers, as Redis and the writer saw it."""

    def __init__(self, retain_bytes: int, max_entry_bytes: int, keep: int | None) -> None:
        self.buffers = Buffers(
            [("a", "k:a", POINT), ("b", "k:b", POINT)],
            max_entry_bytes=max_entry_bytes,
            retain_bytes=retain_bytes,
            keep_written_bytes=keep,
        )
        self.put: dict[str, bytearray] = {"a": bytearray(), "b": bytearray()}
        self.batches: dict[str, list[int]] = {"a": [], "b": []}  # sizes put, in bytes
        self.redis: dict[str, list[Batch]] = {"a": [], "b": []}
        self.tried: dict[str, list[Batch]] = {}
        self.counter = 0

    def do(self, kind: str, which: int | bool, n: int) -> None:
        buffers = self.buffers
        if kind == "put":
            name = "ab"[int(which)]
            payload = bytes((self.counter + i) % 251 for i in range(n * POINT))
            self.counter += n
            buffers.put(name, len(self.put[name]) // POINT, n, payload)
            self.put[name] += payload
            self.batches[name].append(len(payload))
        elif kind == "flush":
            for ch in buffers:
                if not ch.has_data:
                    continue
                entries = buffers.outgoing(ch)
                previous = self.tried.get(ch.name)
                if previous:  # a retry resends the same entries first, unchanged
                    assert entries[: len(previous)] == previous
                if which:
                    self.redis[ch.name].extend(entries)
                    buffers.confirm(ch, entries)
                    self.tried.pop(ch.name, None)
                else:
                    self.tried[ch.name] = list(entries)
        else:
            name = "ab"[int(which)]
            published = buffers.channels[name].published
            buffers.acknowledge({name: min(n, published)})

    def check(self) -> None:
        buffers = self.buffers
        in_memory = sum(len(p) for ch in buffers for _, p in ch.pending) + sum(
            len(e.payload) for ch in buffers for e in ch.inflight
        )
        assert buffers.buffered == in_memory
        assert buffers.retained_bytes == sum(len(e.payload) for ch in buffers for e in ch.retained)
        for ch in buffers:
            entries = self.redis[ch.name]
            # every point once, in order, without gap
            position = 0
            for entry in entries:
                assert entry.index == position and entry.n > 0
                position = entry.stop
            assert ch.published == position
            assert b"".join(e.payload for e in entries) == self.put[ch.name][: position * POINT]
            # an entry merges batches up to the limit (one batch alone may be bigger)
            for entry in entries:
                assert len(entry.payload) <= max(
                    buffers.max_entry_bytes, max(self.batches[ch.name])
                )
            # retained: the last entries in Redis, none wholly acknowledged
            retained = list(ch.retained)
            assert retained == entries[len(entries) - len(retained) :]
            assert all(e.stop > ch.acked for e in retained)
            if not buffers.retain_overflowed:
                unacked = [e for e in entries if e.stop > ch.acked]
                assert retained == unacked
            if ch.trim_target is not None:
                assert ch.trim_target < ch.acked


@settings(max_examples=200, deadline=None)
@given(
    st.lists(operation, max_size=60),
    st.integers(16, 4000),
    st.integers(8, 400),
    st.one_of(st.none(), st.integers(8, 200)),
)
def test_points_reach_redis_once_in_order_and_stay_until_written(
    operations: list[tuple[str, int | bool, int]],
    retain_bytes: int,
    max_entry_bytes: int,
    keep: int | None,
) -> None:
    model = Model(retain_bytes, max_entry_bytes, keep)
    for kind, which, n in operations:
        model.do(kind, which, n)
        model.check()
    # A successful flush at the end sends everything that is left.
    model.do("flush", True, 0)
    model.check()
    for ch in model.buffers:
        assert not ch.has_data and ch.published * POINT == len(model.put[ch.name])
    assert model.buffers.buffered == 0


def test_puts_out_of_order_and_after_the_end_are_refused() -> None:
    buffers = Buffers(
        [("a", "k", 8)], max_entry_bytes=100, retain_bytes=100, keep_written_bytes=None
    )
    buffers.put("a", 0, 1, b"x" * 8)
    with pytest.raises(DataPublishError, match="expected 1"):
        buffers.put("a", 5, 1, b"x" * 8)
    with pytest.raises(DataPublishError, match="not declared"):
        buffers.put("b", 0, 1, b"x" * 8)
    with pytest.raises(DataPublishError, match="ends at 3 points but 1 were emitted"):
        buffers.end("a", 3)
    assert buffers.end("a", 1) and not buffers.end("a", 1)
    with pytest.raises(DataPublishError, match="has ended"):
        buffers.put("a", 1, 1, b"x" * 8)
    with pytest.raises(ValueError, match="two channels named"):
        Buffers([("a", "k", 8), ("a", "k2", 8)], max_entry_bytes=1, retain_bytes=1,
                keep_written_bytes=None)  # fmt: skip


def test_entries_decode_flat_as_redis_sends_them_in_one_place() -> None:
    """The writer's decoder (entries kept raw, fields flat) reads what the publisher encodes,
    whatever the order of the fields, the seal included."""
    from blissng.data import decode_flat_entries
    from blissng.data._entries import data_fields, entry_id, seal_fields

    def flat(fields: tuple[object, ...]) -> list[bytes]:
        return [f if isinstance(f, bytes) else str(f).encode() for f in fields]

    n, _, d, _ = data_fields(2, b"abcdefgh")  # the field names
    entries = [
        [entry_id(0).encode(), flat(data_fields(2, b"01234567"))],
        [entry_id(2).encode(), flat((d, b"abcdefgh", n, 2))],  # another order: the slow path
        [entry_id(4).encode(), flat(seal_fields(4))],
    ]
    assert decode_flat_entries(entries) == [
        (0, 2, b"01234567"),
        (2, 2, b"abcdefgh"),
        (4, 0, None),
    ]
