"""Channel.emit: the scalar fast path gives sinks the same batches as the general path."""

from __future__ import annotations

import numpy as np
import pytest

from blissng.acquisition import Channel, ChannelSpec

pytestmark = pytest.mark.anyio


class KeepingSink:
    """Keeps every batch it receives, as a live display or a test would."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, np.ndarray]] = []
        self.length: int | None = None

    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None:
        self.batches.append((index, batch))

    async def end(self, spec: ChannelSpec, length: int) -> None:
        self.length = length


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "int64"])
async def test_scalar_points_kept_by_a_sink_are_never_overwritten(dtype: str) -> None:
    """More points than one preallocated block: every batch a sink kept still holds its own
    value, with the channel's dtype and shape (1,), at consecutive indices."""
    channel = Channel(ChannelSpec("c", dtype))
    sink = KeepingSink()
    channel.subscribe(sink)
    values = [1.5 * i for i in range(700)]
    for i, value in enumerate(values):
        # alternate Python floats, ints and numpy scalars: all take the fast path
        await channel.emit([value, int(value), np.float64(value)][i % 3])
    await channel.end()
    assert sink.length == len(values) == channel.length
    assert [index for index, _ in sink.batches] == list(range(len(values)))
    for _, batch in sink.batches:
        assert batch.shape == (1,) and batch.dtype == np.dtype(dtype)
    expected = np.asarray(
        [[value, int(value), np.float64(value)][i % 3] for i, value in enumerate(values)],
        dtype=dtype,
    )
    assert np.array_equal(np.concatenate([b for _, b in sink.batches]), expected)


async def test_fast_path_mixes_with_batches_and_arrays() -> None:
    channel = Channel(ChannelSpec("c", "float64"))
    sink = KeepingSink()
    channel.subscribe(sink)
    await channel.emit(1.0)
    await channel.emit(np.array([2.0, 3.0]))
    await channel.emit(np.array(4.0))  # a 0-d array: the general path
    await channel.emit(5)
    assert [index for index, _ in sink.batches] == [0, 1, 3, 4]
    assert np.concatenate([b for _, b in sink.batches]).tolist() == [1, 2, 3, 4, 5]


async def test_fast_path_keeps_errors() -> None:
    channel = Channel(ChannelSpec("c", "int64"))
    with pytest.raises(OverflowError):
        await channel.emit(2**70)
    vector = Channel(ChannelSpec("v", "float64", (3,)))
    with pytest.raises(ValueError, match="expects points of shape"):
        await vector.emit(np.zeros((2, 4)))
    await channel.end()
    with pytest.raises(RuntimeError, match="has ended"):
        await channel.emit(1.0)
