"""Readers fall back on the written files when a scan's data has left Redis.

Registered with :func:`blissng.data.register_fallback` by :func:`install`: the data layer
cannot import the writer (a higher layer), so the writer offers itself. Files are opened
read-only without HDF5 file locking (they may still be being written), in a worker thread
under a deadline, per file system (as the writer does): a dead mount gives its readers a
clear :class:`~blissng.writer.FileSystemStuck` at once, never a pile of stuck threads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from blissng.data import register_fallback
from blissng.redisdb import async_client

from ._files import entry_name, find_scan_file, measurement_name, open_for_reading
from ._scan import file_index_key
from ._storage import Storage

T = TypeVar("T")

READ_TIMEOUT = 10.0  # seconds a file read may take before its file system is reported stuck


class FileFallback:
    """A :class:`blissng.data.DataFallback` reading the writer's scan files."""

    def __init__(self, redis_url: str | None = None, *, timeout: float = READ_TIMEOUT) -> None:
        self.redis_url = redis_url  # where the writer indexes scan id -> file
        self.storage = Storage(timeout)

    async def _in_thread(self, path: Path, fn: Callable[..., T], *args: Any) -> T:
        file_system = await self.storage.file_system(path)
        return await self.storage.call(file_system, fn, *args, what=f"reading {path}")

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
        where = Path(os.fsdecode(path))
        return await self._in_thread(where, _read_document, where)

    async def read(
        self, document: Mapping[str, Any], channel: str, start: int, stop: int
    ) -> np.ndarray | None:
        if not document.get("path"):
            return None
        return await self._in_thread(
            Path(document["path"]), _in_scan_file, _read_points, document, channel, start, stop
        )

    async def length(self, document: Mapping[str, Any], channel: str) -> int | None:
        if not document.get("path"):
            return None
        return await self._in_thread(
            Path(document["path"]), _in_scan_file, _finished_length, document, channel
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


def _in_scan_file(read: Callable[..., T], document: Mapping[str, Any], *args: Any) -> T | None:
    """``read(path, entry, document, *args)`` on the scan's own file (never on a file of
    another scan of the same number); None when there is none."""
    path = find_scan_file(document)
    if path is None:
        return None
    return read(path, entry_name(document), document, *args)


def _measurement(scan: h5py.File, entry: str, document: Mapping[str, Any], channel: str) -> Any:
    """The dataset of ``channel`` in an open scan file (KeyError when it has none)."""
    if channel not in document["channels"]:
        raise KeyError(channel)
    return scan[entry]["measurement"][measurement_name(document, channel)]


def _read_points(
    path: Path, entry: str, document: Mapping[str, Any], channel: str, start: int, stop: int
) -> np.ndarray | None:
    try:
        with open_for_reading(path) as scan:
            dataset = _measurement(scan, entry, document, channel)
            if stop > dataset.shape[0]:
                return None  # not all on disk (yet)
            return np.asarray(dataset[start:stop])
    except (OSError, KeyError):
        return None


def _finished_length(
    path: Path, entry: str, document: Mapping[str, Any], channel: str
) -> int | None:
    """The channel's length in a scan file the writer finished (``end_time`` written);
    None while it is being written: the length of a partial file is not the scan's."""
    try:
        with open_for_reading(path) as scan:
            if "end_time" not in scan[entry]:
                return None
            return int(_measurement(scan, entry, document, channel).shape[0])
    except (OSError, KeyError):
        return None


def install(redis_url: str | None = None) -> FileFallback:
    """Make readers in this process fall back on the scan files."""
    fallback = FileFallback(redis_url)
    register_fallback(fallback)
    return fallback
