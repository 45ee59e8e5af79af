"""Where readers go when Redis no longer has the data: a registration point.

The data layer must not import the writer (a higher layer). The writer registers a
:class:`DataFallback` (it knows how to read its HDF5 files); :class:`~blissng.data.DataStore`
asks the registered fallbacks, in order, when a channel's points were trimmed or the scan
expired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np


class DataFallback(Protocol):
    """Reads what Redis lost. Every method returns ``None`` when it does not have it."""

    async def scan_document(self, scan_id: str) -> Mapping[str, Any] | None:
        """The document (the ``doc`` JSON of docs/data-model.md) of an expired scan."""
        ...

    async def read(
        self, document: Mapping[str, Any], channel: str, start: int, stop: int
    ) -> np.ndarray | None:
        """Points ``start .. stop-1`` of ``channel``, as an ``(n, *shape)`` array."""
        ...

    async def length(self, document: Mapping[str, Any], channel: str) -> int | None:
        """How many points of ``channel`` it holds (all of them once the scan is written:
        what a reader takes as the channel's length when Redis has nothing left of it)."""
        ...


_fallbacks: list[DataFallback] = []


def register_fallback(fallback: DataFallback) -> None:
    """Register a fallback reader (the writer does, at import of its reader module)."""
    if fallback not in _fallbacks:
        _fallbacks.append(fallback)


def unregister_fallback(fallback: DataFallback) -> None:
    if fallback in _fallbacks:
        _fallbacks.remove(fallback)


def fallbacks() -> tuple[DataFallback, ...]:
    return tuple(_fallbacks)
