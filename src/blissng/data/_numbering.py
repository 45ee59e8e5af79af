"""Scan numbers, and where a numbered scan's file goes: numbers never go back in a data
directory.

A scan number names a file on disk (``<dir>/scans/<stem>_<NNNN>.h5``, entry ``<N>.1``). A
number repeated in one data directory would make two scans claim one file, so the number of a
saved scan is, in order:

1. above every number used in the data set's ``scans/`` folder (scan files, files set aside,
   reservations), whatever Redis remembers (a data Redis, or a settings Redis that is not
   persistent, may have been restarted; another server may share the directory);
2. given by the session's counter (``allocate_scan_number``: atomic ``INCR`` in the settings
   Redis, so numbers keep growing across restarts and sessions);
3. reserved on disk, atomically (``O_EXCL`` on a hidden file beside the scan files), so two
   servers sharing a directory never take the same number at once. The writer removes the
   reservation once the scan file exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aredis

from blissng.comm import blocking

from . import _keys as keys

SCANS_FOLDER = "scans"
MAX_TRIES = 1000  # numbers taken by others in a row before giving up


def scan_file_name(dataset_file: str | Path, number: int) -> Path:
    """Where scan ``number`` of the data set file ``dataset_file`` is written."""
    dataset_file = Path(dataset_file)
    return dataset_file.parent / SCANS_FOLDER / f"{dataset_file.stem}_{int(number):04d}.h5"


def reservation_name(dataset_file: str | Path, number: int) -> Path:
    """The hidden file that reserves ``number`` in the data set's folder."""
    scan_file = scan_file_name(dataset_file, number)
    return scan_file.with_name(f".{scan_file.stem}.reserved")


def highest_number_on_disk(dataset_file: str | Path) -> int:
    """The highest scan number used beside ``dataset_file`` (0 if none). Blocking."""
    dataset_file = Path(dataset_file)
    pattern = re.compile(rf"^\.?{re.escape(dataset_file.stem)}_(\d+)[._]")
    try:
        names = os.listdir(dataset_file.parent / SCANS_FOLDER)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    numbers = [int(m.group(1)) for m in map(pattern.match, names) if m is not None]
    return max(numbers, default=0)


def reserve(dataset_file: str | Path, number: int) -> bool:
    """Take ``number`` for a scan of ``dataset_file`` on disk; False if it is used. Blocking."""
    if scan_file_name(dataset_file, number).exists():
        return False
    reservation = reservation_name(dataset_file, number)
    reservation.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(reservation, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


def release_reservation(dataset_file: str | Path, number: int) -> None:
    """Remove the reservation of ``number`` (the writer, once the scan's file exists; a scan
    that ended before it published, through :func:`release_scan_number`). Blocking."""
    reservation_name(dataset_file, number).unlink(missing_ok=True)


async def release_scan_number(
    dataset_file: str | Path, number: int, *, timeout: float = 10.0
) -> None:
    """Remove the reservation of a scan that ended before it published its document (the
    writer, which never heard of it, would leave it on disk for ever; it removes the others
    once their file exists). The number is not given again by the session's counter."""
    await blocking(
        release_reservation, dataset_file, number, timeout=timeout, what=f"releasing scan {number}"
    )


async def allocate_scan_number(client: aredis.Redis, session: str, *, at_least: int = 1) -> int:
    """The next scan number of ``session`` (INCR, atomic across processes).

    ``at_least`` lets the caller skip numbers already used on disk. Pass a client of the
    settings Redis to keep numbers across restarts; :func:`next_scan_number` adds the disk.
    """
    number = await client.eval(_NEXT_NUMBER, 1, keys.scan_number_key(session), at_least)
    return int(number)


async def next_scan_number(
    allocate: Callable[[int], Awaitable[int]],
    dataset_file: str | Path | None,
    *,
    timeout: float = 10.0,
) -> int:
    """The number of a new scan saved in ``dataset_file`` (None: not saved).

    ``allocate(at_least)`` is the session's counter (e.g. :func:`allocate_scan_number` on the
    settings Redis); the number it gives is raised above what the data set's folder holds and
    reserved there. The folder is read in a worker thread within ``timeout`` s.
    """
    if dataset_file is None:
        return await allocate(1)
    used = await blocking(
        highest_number_on_disk, dataset_file, timeout=timeout, what=f"listing {dataset_file}"
    )
    number = await allocate(used + 1)
    for _ in range(MAX_TRIES):
        if await blocking(
            reserve, dataset_file, number, timeout=timeout, what=f"reserving scan {number}"
        ):
            return number
        number = await allocate(number + 1)
    raise RuntimeError(
        f"no free scan number near {number} beside {dataset_file}: {MAX_TRIES} taken in a row"
    )


_NEXT_NUMBER = """
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if n < floor then
    redis.call('SET', KEYS[1], floor)
    n = floor
end
return n
"""
