"""The writer's blocking work (h5py, the file system), off its event loop, per file system.

Every call goes through :func:`blissng.threads.run_in_thread` with the file system's mount
point as the resource: calls to one file system run one at a time, each under a deadline that really
abandons a stuck thread; while that thread has not returned, the file system is *stuck* and
every new call to it fails fast with :class:`FileSystemStuck` (no thread piles up behind a
dead NFS mount), while scans on other file systems go on.

A limit HDF5 imposes: h5py holds one process-wide lock during each HDF5 call, so a call stuck
*inside* HDF5 (a write on a dead mount) makes every other HDF5 call of the process wait too.
The checks that touch a file system first (free space, the file's signature, ``fsync``) run
outside that lock, so a mount that is already dead is found there, before HDF5 enters it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from blissng.threads import CallTimeout, ResourceBusy, run_in_thread, stuck_calls

from ._errors import FileSystemStuck

T = TypeVar("T")

MOUNTS_TTL = 30.0  # seconds between two readings of the mount table
PREFIX = "file system "


def read_mounts() -> list[str]:
    """Mount points, from ``/proc/self/mounts`` (local: never blocks on a dead mount)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as table:
            points = [line.split()[1] for line in table if len(line.split()) > 1]
    except OSError:
        return ["/"]
    # Spaces and other characters are escaped as \\ooo in the table.
    return [p.encode().decode("unicode_escape") if "\\" in p else p for p in points]


def mount_point(path: Path, mounts: list[str]) -> str:
    """The mount point holding ``path`` (the longest mount that is a prefix of it)."""
    text = os.path.abspath(path)
    best = "/"
    for point in mounts:
        inside = text == point or text.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best = point
    return best


class Storage:
    """Runs the writer's blocking calls, one file system at a time, each within ``timeout``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._mounts: list[str] = []
        self._read_at = -MOUNTS_TTL

    async def file_system(self, path: Path) -> str:
        """The name calls to ``path`` are serialised and marked stuck under."""
        if time.monotonic() - self._read_at > MOUNTS_TTL:
            self._mounts = await run_in_thread(
                read_mounts, timeout=self.timeout, what="mount table"
            )
            self._read_at = time.monotonic()
        return PREFIX + mount_point(path, self._mounts)

    async def call(self, file_system: str, fn: Callable[..., T], *args: Any, what: str) -> T:
        """``fn(*args)`` in a thread; :class:`FileSystemStuck` when it does not return in time
        or while an earlier call to that file system is still stuck."""
        try:
            return await run_in_thread(
                fn, *args, resource=file_system, timeout=self.timeout, what=what
            )
        except CallTimeout:
            raise FileSystemStuck(
                file_system,
                f"{file_system} is not answering: {what} did not return within {self.timeout:g} s",
            ) from None
        except ResourceBusy as exc:
            raise FileSystemStuck(
                file_system, f"{file_system} is not answering: {exc.detail}"
            ) from None

    @staticmethod
    def stuck() -> dict[str, str]:
        """The file systems stuck now, with the call still running in its thread."""
        return {k: v for k, v in stuck_calls().items() if k.startswith(PREFIX)}


def free_bytes(folder: Path) -> int:
    """Bytes free for us in ``folder``, or in its closest existing parent. Blocking."""
    stats = _statvfs_of_existing(folder)
    return stats.f_bavail * stats.f_frsize


def _statvfs_of_existing(folder: Path) -> os.statvfs_result:
    """``statvfs`` of ``folder``, or of its closest existing parent (not created yet)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.statvfs(folder)
