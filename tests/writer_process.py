"""The HDF5 writer as the real process a server runs (``python -m blissng.writer``), for tests
that follow a scan to its file."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

import redis.asyncio as aredis

from blissng.data import keys as data_keys


def start_writer_process(url: str, *extra: str) -> subprocess.Popen[bytes]:
    """``blissng writer --redis url`` in a child process (stop it with ``stop_writer``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "blissng.writer", "--redis", url, "--log-level", "WARNING", *extra],
        stdin=subprocess.DEVNULL,
    )


def stop_writer(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


@contextlib.contextmanager
def writer_process(url: str, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    process = start_writer_process(url, *extra)
    try:
        yield process
    finally:
        stop_writer(process)


async def is_written(client: aredis.Redis, scan_id: str) -> bool:
    """The writer marked the scan written (every point on disk, the file linked)."""
    return await client.hget(data_keys.ack_key(scan_id), "written") == b"1"
