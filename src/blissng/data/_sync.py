"""A synchronous facade of the reader API, for scripts and plain functions.

It runs the async :class:`~blissng.data.DataStore` on an event loop of its own in a
worker thread (anyio's blocking portal), so it works from a script with no loop and from a
worker thread of a running one::

    with SyncDataStore(url) as store:
        scan = store.last_scan("demo")
        diode = scan["diode"]
        print(len(diode), diode[0], diode[2:5])
        for batch in diode.cursor():   # until the stream is sealed
            ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import redis.asyncio as aredis
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._cursors import ChannelCursor, ScanCursor
from ._errors import EndOfData
from ._views import ChannelView, DataStore, ScanView


class SyncDataStore:
    """``SyncDataStore(url)``: the scans of a data Redis, with blocking calls."""

    def __init__(self, url: str) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._store: DataStore = self._portal.call(_make_store, url)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise

    def close(self) -> None:
        if self._portal_cm is not None:
            try:
                self._portal.call(self._store.aclose)
            finally:
                self._portal_cm.__exit__(None, None, None)
                self._portal_cm = None  # type: ignore[assignment]

    def __enter__(self) -> SyncDataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scans(self, session: str | None = None, count: int = 100) -> list[SyncScanView]:
        return [
            SyncScanView(self._portal, view)
            for view in self._portal.call(self._store.scans, session, count)
        ]

    def last_scan(self, session: str | None = None) -> SyncScanView:
        return SyncScanView(self._portal, self._portal.call(self._store.last_scan, session))

    def get_scan(self, scan_id: str) -> SyncScanView:
        return SyncScanView(self._portal, self._portal.call(self._store.get_scan, scan_id))

    def follow(self, session: str | None = None, *, since: str = "$") -> Iterator[SyncScanView]:
        """New scans as they are created (blocks between them; break out to stop)."""
        iterator = self._store.follow(session, since=since)
        try:
            while True:
                view = self._portal.call(_anext, iterator)
                yield SyncScanView(self._portal, view)
        finally:
            if self._portal_cm is not None:  # not after close()
                self._portal.call(_aclose, iterator)


async def _make_store(url: str | aredis.Redis) -> DataStore:
    return DataStore(url)


async def _aclose(iterator: Any) -> None:
    await iterator.aclose()


async def _anext(iterator: Any) -> Any:
    return await iterator.__anext__()


class SyncScanView:
    """A :class:`~blissng.data.ScanView` with blocking calls."""

    def __init__(self, portal: BlockingPortal, view: ScanView) -> None:
        self._portal = portal
        self.view = view

    def __repr__(self) -> str:
        return repr(self.view).replace("ScanView", "SyncScanView", 1)

    id = property(lambda self: self.view.id)
    session = property(lambda self: self.view.session)
    number = property(lambda self: self.view.number)
    name = property(lambda self: self.view.name)
    info = property(lambda self: self.view.info)
    state = property(lambda self: self.view.state)
    end_reason = property(lambda self: self.view.end_reason)
    error = property(lambda self: self.view.error)

    def refresh(self) -> str:
        return self._portal.call(self.view.refresh)

    def wait_state(self, state: str, timeout: float | None = None) -> str:
        return self._portal.call(self.view.wait_state, state, timeout)

    @property
    def channels(self) -> Mapping[str, SyncChannelView]:
        return {name: SyncChannelView(self._portal, ch) for name, ch in self.view.channels.items()}

    def __getitem__(self, name: str) -> SyncChannelView:
        return SyncChannelView(self._portal, self.view[name])

    def cursor(self, channels: Sequence[str] | None = None) -> SyncScanCursor:
        return SyncScanCursor(self._portal, self.view.cursor(channels))


class SyncChannelView:
    """``len(ch)``, ``ch[i]``, ``ch[a:b]`` (numpy), ``ch.cursor()``."""

    def __init__(self, portal: BlockingPortal, channel: ChannelView) -> None:
        self._portal = portal
        self.channel = channel

    name = property(lambda self: self.channel.name)
    dtype = property(lambda self: self.channel.dtype)
    shape = property(lambda self: self.channel.shape)
    unit = property(lambda self: self.channel.unit)

    def __len__(self) -> int:
        return self._portal.call(self.channel.length)

    def sealed(self) -> bool:
        return self._portal.call(self.channel.sealed)

    def __getitem__(self, item: int | slice) -> np.ndarray:
        return self._portal.call(_await, self.channel[item])

    def get(self, start: int, stop: int | None = None) -> np.ndarray:
        return self._portal.call(self.channel.get, start, stop)

    def cursor(self, start: int = 0) -> SyncChannelCursor:
        return SyncChannelCursor(self._portal, self.channel.cursor(start))


async def _await(awaitable: Any) -> Any:
    return await awaitable


class SyncChannelCursor:
    def __init__(self, portal: BlockingPortal, cursor: ChannelCursor) -> None:
        self._portal = portal
        self.cursor = cursor

    @property
    def position(self) -> int:
        return self.cursor.position

    def read(self, timeout: float | None = None) -> np.ndarray:
        return self._portal.call(self.cursor.read, timeout)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            try:
                yield self.read()
            except EndOfData:
                return


class SyncScanCursor:
    def __init__(self, portal: BlockingPortal, cursor: ScanCursor) -> None:
        self._portal = portal
        self.cursor = cursor

    @property
    def finished(self) -> bool:
        return self.cursor.finished

    def read(self, timeout: float | None = None) -> dict[str, np.ndarray]:
        return self._portal.call(self.cursor.read, timeout)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while not self.cursor.finished:
            update = self.read()
            if update:
                yield update
