"""A channel sink for tests: it records what a chain's channels deliver, so that a test can
check indices, values and seals (``blissng.acquisition.ChannelSink``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the acquisition layer is loaded by the tests that use a sink, not here
    from blissng.acquisition import AcquisitionChain, ChannelSpec


class RecordingSink:
    """Keeps every batch with its index, per channel, and the length each channel was sealed
    with."""

    def __init__(self) -> None:
        self.batches: dict[str, list[tuple[int, np.ndarray]]] = {}
        self.ended: dict[str, int] = {}

    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None:
        self.batches.setdefault(spec.name, []).append((index, batch.copy()))

    async def end(self, spec: ChannelSpec, length: int) -> None:
        self.ended[spec.name] = length

    def indices(self, name: str) -> list[int]:
        """The index of every point received on ``name``, in arrival order."""
        return [i + k for i, b in self.batches.get(name, []) for k in range(len(b))]

    def values(self, name: str) -> np.ndarray:
        """Every point received on ``name``, concatenated (empty if none came)."""
        batches = self.batches.get(name, [])
        return np.concatenate([b for _, b in batches]) if batches else np.empty(0)

    def contiguous_values(self, name: str) -> np.ndarray:
        """``values(name)``, after checking each batch starts where the one before ended."""
        batches = self.batches.get(name, [])
        indices = [index for index, _ in batches]
        expected = np.cumsum([0] + [len(b) for _, b in batches])[:-1].tolist()
        assert indices == expected, f"{name}: batch indices {indices[:5]}... not contiguous"
        return self.values(name)


def subscribe(chain: AcquisitionChain) -> RecordingSink:
    """A new ``RecordingSink`` subscribed to every channel of ``chain``."""
    sink = RecordingSink()
    for channel in chain.channels:
        channel.subscribe(sink)
    return sink
