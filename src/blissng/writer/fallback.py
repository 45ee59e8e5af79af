"""Readers fall back on the written files when a scan's data has left Redis.

Registered with :func:`blissng.data.register_fallback` by :func:`install`: the data layer
cannot import the writer (a higher layer), so the writer offers itself. Files are opened
read-only without HDF5 file locking (they may still be being written), in a worker thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from blissng.data import register_fallback
from blissng.redisdb import async_client

from .nexus import dataset_name, entry_name, open_for_reading, scan_file_path
from .service import file_index_key


class FileFallback:
    """A :class:`blissng.data.DataFallback` reading the writer's scan files."""

    def __init__(self, redis_url: str | None = None) -> None:
        self.redis_url = redis_url  # where the writer indexes scan id -> file

    async def scan_document(self, scan_id: str) -> Mapping[str, Any] | None:
        if self.redis_url is None:
            return None
        client = async_client(self.redis_url)
        try:
            path = await client.get(file_index_key(scan_id))
        finally:
            await client.aclose()
        if path is None:
            return None
        return await anyio.to_thread.run_sync(_read_document, Path(os.fsdecode(path)))

    async def read(
        self, document: Mapping[str, Any], channel: str, start: int, stop: int
    ) -> np.ndarray | None:
        if not document.get("path"):
            return None
        path = scan_file_path(document)
        return await anyio.to_thread.run_sync(
            _read_points, path, entry_name(document), document, channel, start, stop
        )


def _read_document(path: Path) -> Mapping[str, Any] | None:
    try:
        with open_for_reading(path) as scan:
            for entry in scan.values():
                text = entry.attrs.get("blissng_document")
                if text is not None:
                    return json.loads(text)
    except OSError:
        return None
    return None


def _read_points(
    path: Path, entry: str, document: Mapping[str, Any], channel: str, start: int, stop: int
) -> np.ndarray | None:
    description = document["channels"].get(channel)
    if description is None:
        return None
    name = dataset_name(channel)
    if description.get("kind") == "reference":
        name += "_references"
    try:
        with open_for_reading(path) as scan:
            dataset = scan[entry]["measurement"][name]
            if stop > dataset.shape[0]:
                return None  # not all on disk (yet)
            return np.asarray(dataset[start:stop])
    except (OSError, KeyError):
        return None


def install(redis_url: str | None = None) -> FileFallback:
    """Make readers in this process fall back on the scan files."""
    fallback = FileFallback(redis_url)
    register_fallback(fallback)
    return fallback
