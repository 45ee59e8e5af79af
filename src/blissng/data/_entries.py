"""The channel-stream entry format (docs/data-model.md, "Channel streams"), in one place.

An entry is either a batch of points (fields ``n`` and ``d``, ID ``<first index>-1``) or the
seal (field ``end``, ID ``<total length>-1``). The publisher encodes entries with
:func:`data_fields` / :func:`seal_fields`; readers decode them with :func:`parse` (or
:func:`decode_flat`, many entries kept as Redis sends them) and :func:`points`. Nothing
else spells a field name or builds an ID: the writer decodes with these too (``blissng.data``
exports them as ``parse_entry`` and ``decode_flat_entries``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

N = b"n"
"""Number of points in a data entry (decimal)."""
DATA = b"d"
"""Raw bytes of the ``(n, *shape)`` array, C order."""
END = b"end"
"""The seal's field: the channel's total number of points."""


def entry_id(index: int) -> str:
    """The stream entry ID of a batch whose first point is ``index`` (or of the seal of a
    channel of ``index`` points)."""
    return f"{index}-1"


def entry_index(entry: bytes | str) -> int:
    """The index of the first point of the entry with this ID (the length, for a seal)."""
    if isinstance(entry, bytes):  # as Redis sends it
        return int(entry[: entry.index(b"-")])
    return int(entry.split("-", 1)[0])


def before(index: int) -> str:
    """An ID just below every entry starting at ``index``: ``XREAD`` from it returns the
    entry that starts there first."""
    return f"{index}-0"


def data_fields(n: int, payload: bytes) -> tuple[bytes, int, bytes, bytes]:
    """The field/value pairs of a data entry, flat (as XADD takes them)."""
    return (N, n, DATA, payload)


def seal_fields(length: int) -> tuple[bytes, int]:
    """The field/value pair of a seal."""
    return (END, length)


@dataclasses.dataclass(frozen=True)
class Batch:
    """A data entry: ``n`` points from ``index``, as raw bytes."""

    index: int
    n: int
    payload: bytes

    @property
    def stop(self) -> int:
        """The index after the last point of the batch."""
        return self.index + self.n


@dataclasses.dataclass(frozen=True)
class Seal:
    """The last entry of a stream: the channel has ``length`` points, no more will come."""

    length: int


def parse(entry: bytes | str, fields: Mapping[bytes, bytes]) -> Batch | Seal:
    """One stream entry as read by redis-py (``XRANGE``/``XREAD``, bytes replies)."""
    if END in fields:
        return Seal(int(fields[END]))
    return Batch(entry_index(entry), int(fields[N]), fields[DATA])


FlatEntry = tuple[int, int, bytes | None]
"""A decoded entry: ``(index, n, payload)`` for a batch, ``(length, 0, None)`` for the seal."""


def decode_flat(entries: Iterable[Sequence[Any]]) -> list[FlatEntry]:
    """Entries as ``XREAD``/``XRANGE`` send them, fields flat (``[b"n", n, b"d", d]``,
    ``[b"end", length]``), decoded in one pass into :data:`FlatEntry` tuples: for readers of
    many entries (the writer: 10,000s per second), no dict or object per entry (a
    :class:`Batch` per entry made the writer's decoding 3x slower)."""
    return [
        (int(entry[: entry.index(b"-")]), int(fields[1]), fields[3])  # entry_index, inlined
        if len(fields) == 4 and fields[2] == DATA and fields[0] == N
        else _decode_one(entry, fields)
        for entry, fields in entries
    ]


def _decode_one(entry: bytes, fields: Sequence[bytes]) -> FlatEntry:
    one = parse(entry, dict(zip(fields[::2], fields[1::2], strict=True)))
    return (one.length, 0, None) if isinstance(one, Seal) else (one.index, one.n, one.payload)


def points(batch: Batch, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    """The ``(n, *shape)`` array of a batch (a read-only view of its bytes, no copy)."""
    return np.frombuffer(batch.payload, dtype).reshape((batch.n, *shape))
