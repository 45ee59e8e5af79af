"""File-system queries off the event loop, with a timeout (wall #2 of the design).

``os.statvfs`` or ``os.makedirs`` on a dead NFS mount can block for minutes. Each query runs in
a worker thread under a deadline; the thread is abandoned when the deadline passes (it may
still be stuck in the kernel), and while it is stuck, further queries fail fast instead of
piling up stuck threads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

_limiter: anyio.CapacityLimiter | None = None
_stuck: dict[str, float] = {}


class FileSystemTimeout(TimeoutError):
    """A file-system query did not return in time (a dead network mount?)."""


def _get_limiter() -> anyio.CapacityLimiter:
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(4)
    return _limiter


async def fs_call(
    what: str,
    func: Callable[..., T],
    *args: Any,
    timeout: float = 5.0,
) -> T:
    """``func(*args)`` in a thread; :class:`FileSystemTimeout` naming ``what`` after
    ``timeout`` s. Fails fast while an earlier query on the same ``what`` is still stuck."""
    if what in _stuck:
        raise FileSystemTimeout(
            f"{what}: an earlier query has been stuck for "
            f"{anyio.current_time() - _stuck[what]:.1f} s (file system not answering)"
        )
    done = False

    def run() -> T:
        nonlocal done
        try:
            return func(*args)
        finally:
            done = True
            _stuck.pop(what, None)

    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(
                run, abandon_on_cancel=True, limiter=_get_limiter()
            )
    except TimeoutError:
        if not done:
            _stuck[what] = anyio.current_time() - timeout
        raise FileSystemTimeout(f"{what} did not answer within {timeout:g} s") from None


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
    if free < min_free:
        raise OSError(
            f"only {free / 1e6:.0f} MB free in {path}; a scan needs at least "
            f"{min_free / 1e6:.0f} MB: free some space or change SCAN_SAVING.base_path"
        )
    return free
