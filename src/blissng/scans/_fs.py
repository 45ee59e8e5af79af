"""File-system queries off the event loop, with a timeout (wall #2 of the design), and the one
free-space rule that the scans layer and the writer share.

``os.statvfs`` or ``os.makedirs`` on a dead NFS mount can block for minutes. Each query runs in
a worker thread under a deadline through :func:`blissng.threads.run_in_thread` (the one
blocking helper): the thread is abandoned when the deadline passes (it may still be stuck in the
kernel), and while it is stuck, further queries on the same path fail fast instead of piling
up stuck threads.

Free space: a scan starts only if its directory has :func:`min_free_bytes` free
(``SCAN_SAVING.min_free_mb``, default :data:`DEFAULT_MIN_FREE_MB`); the writer applies the same
rule, with the same figure (the scan document carries it), before each write. So a scan that
starts is a scan the writer will write, and a disk that fills during a scan is reported by the
writer with the same message, before HDF5 runs out of space.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from blissng.errors import BlissngError
from blissng.threads import CallTimeout, ResourceBusy, run_in_thread

T = TypeVar("T")

DEFAULT_MIN_FREE_MB = 64.0
"""Space left free beside a scan's data (HDF5's own metadata, the other files of the disk)."""


class FileSystemTimeout(BlissngError, TimeoutError):
    """A file-system query did not return in time (a dead network mount?)."""


class NotEnoughSpace(BlissngError, OSError):
    """A directory has less free space than a scan needs."""


async def fs_call(
    what: str,
    func: Callable[..., T],
    *args: Any,
    timeout: float = 5.0,
) -> T:
    """``func(*args)`` in a thread; :class:`FileSystemTimeout` naming ``what`` after
    ``timeout`` s. Fails fast while an earlier query on the same ``what`` is still stuck."""
    try:
        return await run_in_thread(func, *args, resource=what, timeout=timeout, what=what)
    except CallTimeout:
        raise FileSystemTimeout(f"{what} did not answer within {timeout:g} s") from None
    except ResourceBusy as exc:
        raise FileSystemTimeout(
            f"{what}: an earlier query is stuck (file system not answering): {exc.detail}"
        ) from None


def min_free_bytes(document: Mapping[str, Any] | None = None) -> int:
    """The free space a scan's directory must keep: the session's ``SCAN_SAVING.min_free_mb``
    carried by the scan document (``metadata.min_free_mb``), else the default."""
    metadata = (document or {}).get("metadata") or {}
    value = metadata.get("min_free_mb", DEFAULT_MIN_FREE_MB)
    try:
        return max(0, int(float(value) * 1e6))
    except (TypeError, ValueError):
        return int(DEFAULT_MIN_FREE_MB * 1e6)


def check_free_space(where: str | Path, free: int, *, min_free: int, needed: int = 0) -> None:
    """THE free-space rule: ``free`` bytes must cover ``needed`` plus ``min_free``.

    :class:`NotEnoughSpace` says how much is free, how much is needed and what to do."""
    if free >= needed + min_free:
        return
    wants = f"{needed / 1e6:.1f} MB of data and " if needed else ""
    raise NotEnoughSpace(
        f"only {free / 1e6:.1f} MB free in {where}; a scan needs {wants}{min_free / 1e6:.0f} MB "
        "kept free (SCAN_SAVING.min_free_mb): free some space or change SCAN_SAVING.base_path"
    )


def _check_writable_dir(path: str) -> int:
    """Create ``path`` if needed, check that it is a writable directory; return free bytes."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"no permission to write in {directory}")
    return shutil.disk_usage(directory).free


async def check_directory(
    path: str,
    *,
    min_free: int = 0,
    timeout: float = 5.0,
) -> int:
    """Make sure ``path`` exists, is writable and has ``min_free`` bytes; return free bytes."""
    free = await fs_call(f"checking {path}", _check_writable_dir, path, timeout=timeout)
    check_free_space(path, free, min_free=min_free)
    return free
