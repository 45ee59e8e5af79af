"""``SCANS``: the session's last scans, read from the data Redis (BLISS's ``SCANS``).

The list is what Redis holds for the session (its scans announced in ``blissng:scans`` and not
yet expired), so it survives a reconnect and a restart of the server, and shows the scans run
by any process of the session. An entry is the live :class:`~blissng.scans.Scan` when this
process ran it, else a :class:`StoredScan` read back from Redis: both have ``number``, ``name``,
``title``, ``state``, ``get_data()``, ``peak()``/``com()``/``cen()``/``fwhm()``.

Indexing from a console's worker thread (``SCANS[-1]``) reads Redis first; on the event loop
it gives what was last read (a thread must not wait on its own loop).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from blissng.data import DataError, DataStore, find_channel

from ._bridge import command, on_event_loop_thread, run_blocking
from ._clients import shared_client
from ._scan_methods import ScanMethods

# A closed scan's end reason, as a live Scan's state says it.
_STATES = {"success": "done", "aborted": "aborted", "failed": "failed"}


class StoredScan(ScanMethods):
    """A scan read back from the data Redis (its document and its data)."""

    def __init__(self, view: Any, redis_url: str) -> None:
        self._view = view
        self._redis_url = redis_url
        self.info: dict[str, Any] = view.info
        self.scan_id: str = view.id
        self.key: str = view.key
        self.number: int = view.number
        self.name: str = view.name
        self.title: str = self.info.get("title") or self.name
        self.path: str | None = self.info.get("path")
        self.npoints: int | None = self.info.get("npoints")
        self.motors: list[dict[str, Any]] = list(self.info.get("motors", []))
        self.start_time: float = view.start_time
        self.end_time: float | None = view.end_time
        self.error: str | None = view.error
        reason = view.end_reason
        self.state: str = _STATES.get(reason or "", "running" if view.state != "closed" else "done")

    def __repr__(self) -> str:
        return f"<Scan {self.number} {self.title!r} {self.state} (from Redis)>"

    @property
    def channels(self) -> list[str]:
        return list(self.info.get("channels", {}))

    def describe(self) -> dict[str, Any]:
        """The scan document (docs/data-model.md)."""
        return self.info

    @command
    async def get_data(self, channel: Any = None) -> Any:
        """``{channel: numpy array}``, or one channel's array (a full name, a label)."""
        store = DataStore(shared_client(self._redis_url))
        view = await store.get_scan(self.scan_id)
        if channel is not None:
            name = find_channel(self.info, channel)
            return await view.channels[name].get(0)
        data: dict[str, np.ndarray] = {}
        for name, chan in view.channels.items():
            data[name] = await chan.get(0)
        return data


class ScanHistory(Sequence[Any]):
    """The session's last ``maxlen`` scans, oldest first (``SCANS[-1]`` is the last one)."""

    def __init__(self, session: str, *, redis_url: str | None = None, maxlen: int = 20) -> None:
        self.session = session
        self.redis_url = redis_url
        self.maxlen = maxlen
        self._live: list[Any] = []  # scans run by this process, in order
        self._entries: list[Any] = []

    def record(self, scan: Any) -> None:
        """A scan of this process started (it is the last one at once)."""
        self._live = [*self._live, scan][-self.maxlen :]
        self._entries = [*self._entries, scan][-self.maxlen :]

    @property
    def last(self) -> Any:
        """The last scan as last read (no I/O)."""
        return self._entries[-1] if self._entries else None

    async def refresh(self) -> list[Any]:
        """Read the session's scans from Redis; this process's own ones stay live objects."""
        if self.redis_url is None:
            self._entries = list(self._live)
            return self._entries
        store = DataStore(shared_client(self.redis_url))
        try:
            views = await store.scans(self.session, count=self.maxlen)
        except (DataError, OSError):
            return self._entries  # Redis away: what was read last
        live = {scan.scan_id: scan for scan in self._live if scan.scan_id is not None}
        entries = [live.pop(v.id, None) or StoredScan(v, self.redis_url) for v in views]
        known = {id(e) for e in entries}
        # this process's scans not (yet) in Redis: being published, or expired already (their
        # data then comes from their files)
        entries += [s for s in self._live if id(s) not in known]
        entries.sort(key=lambda s: math.inf if s.start_time is None else s.start_time)
        self._entries = entries[-self.maxlen :]
        return self._entries

    def _current(self) -> list[Any]:
        if not on_event_loop_thread():
            try:
                return run_blocking(self.refresh)
            except Exception:  # no loop to read it with (a plain script): what we have
                return self._entries
        return self._entries

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        entries = self._current()
        if isinstance(index, int) and not -len(entries) <= index < len(entries):
            raise IndexError(
                f"SCANS[{index}]: the session has {len(entries)} scan(s) in Redis"
                if entries
                else "SCANS is empty: no scan of this session is in Redis (run one)"
            )
        return entries[index]

    def __len__(self) -> int:
        return len(self._current())

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._current()))

    def __repr__(self) -> str:
        return f"<SCANS of {self.session}: {len(self._entries)} scan(s)>"

    def __info__(self) -> str:
        entries = self._current()
        if not entries:
            return f"SCANS: no scan of session {self.session} in Redis"
        from ._listing import format_table

        rows = [
            (i - len(entries), s.number, s.state, s.title, s.path or "(not saved)")
            for i, s in enumerate(entries)
        ]
        return format_table(("index", "#", "state", "title", "file"), rows)
