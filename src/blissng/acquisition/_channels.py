"""Typed data channels: what acquisition slaves emit and what ``blissng.data`` publishes.

The chain knows nothing of Redis: a slave calls ``await channel.emit(batch)`` and every sink
subscribed to the channel (the Redis publisher, a test, a live display) receives the batch.
``emit`` returns at once unless a sink applies backpressure (its bounded buffer is full): that
is the only place where acquisition waits on consumers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

ChannelKind = Literal["data", "reference"]
# What a channel's values are, so readers never guess from its name: "axis" = the positions of
# the motor named by ``device`` (a motor master's channel), "time" = a master's clock (elapsed
# time, epoch), "counter" = what a detector measured.
ChannelRole = Literal["counter", "axis", "time"]


@dataclasses.dataclass(frozen=True)
class ChannelSpec:
    """What a channel carries: one point is an array of ``shape`` and ``dtype``.

    ``kind="reference"`` channels (2D frames) carry no pixels: each point is a
    ``(file, dataset, index)`` reference, dtype ``REFERENCE_DTYPE``. ``role`` says whose values
    these are (:data:`ChannelRole`): the master that creates a motor's channel says "axis".
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    unit: str | None = None
    device: str | None = None
    kind: ChannelKind = "data"
    role: ChannelRole = "counter"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "unit": self.unit,
            "device": self.device,
            "kind": self.kind,
            "role": self.role,
        }


# A reference to a frame kept in a detector's own file.
REFERENCE_DTYPE = np.dtype([("file", "S256"), ("dataset", "S128"), ("index", "<i8")])


class ChannelSink(Protocol):
    """Receives batches. ``index`` is the index of the batch's first point in the channel."""

    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None: ...

    async def end(self, spec: ChannelSpec, length: int) -> None: ...


# Exact types of single values that ``Channel.emit`` turns into a batch without np.asarray.
_SCALAR_TYPES = frozenset(
    {float, int, bool, np.float64, np.float32, np.int64, np.int32, np.uint32, np.uint64}
)

_SCALAR_BLOCK = 256  # scalar points allocated at once by Channel.emit's fast path


class Channel:
    """One channel of one scan: counts its points and fans batches out to its sinks."""

    def __init__(self, spec: ChannelSpec) -> None:
        self.spec = spec
        self.length = 0
        self.ended = False
        self._sinks: list[ChannelSink] = []
        self._dtype = REFERENCE_DTYPE if spec.kind == "reference" else np.dtype(spec.dtype)
        # Scalar numeric channels take the fast path for single values (see ``emit``).
        self._scalar = spec.shape == () and spec.kind == "data"
        self._block: np.ndarray = np.empty(0, dtype=self._dtype)
        self._slot = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def subscribe(self, sink: ChannelSink) -> None:
        self._sinks.append(sink)

    async def emit(self, data: npt.ArrayLike) -> None:
        """Emit one point (an array of ``shape``) or a batch (``(n, *shape)``)."""
        if self.ended:
            raise RuntimeError(f"channel {self.name} has ended; cannot emit more points")
        if self._scalar and type(data) in _SCALAR_TYPES:
            # One scalar point (a Python or numpy number): written into a preallocated block
            # and passed on as a (1,) view of it, without np.asarray + reshape (about half
            # the cost per point, measured in benchmarks/publish.py). A slot is never
            # rewritten, so a sink may keep the batch.
            slot = self._slot
            block = self._block
            if slot == len(block):
                block = self._block = np.empty(_SCALAR_BLOCK, dtype=self._dtype)
                slot = 0
            block[slot] = data
            batch = block[slot : slot + 1]
            self._slot = slot + 1
            index = self.length
            self.length = index + 1
            for sink in self._sinks:
                await sink.put(self.spec, index, batch)
            return
        batch = np.asarray(data, dtype=self._dtype)
        if batch.ndim == len(self.spec.shape):
            batch = batch.reshape((1, *self.spec.shape))
        elif batch.shape[1:] != self.spec.shape:
            raise ValueError(
                f"channel {self.name} expects points of shape {self.spec.shape}, "
                f"got a batch of shape {batch.shape}"
            )
        if len(batch) == 0:
            return
        index = self.length
        self.length += len(batch)
        for sink in self._sinks:
            await sink.put(self.spec, index, batch)

    async def end(self) -> None:
        """No more points: sinks seal their streams with the total length."""
        if self.ended:
            return
        self.ended = True
        for sink in self._sinks:
            await sink.end(self.spec, self.length)
