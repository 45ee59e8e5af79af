"""An hour of a session, compressed into a minute, on a real ``blissng demo --headless``:
hundreds of small scans (a user's loop, typed once), short TTLs and a small data Redis (its
``maxmemory`` lowered: the memory guard trims written scans), the writer killed and restarted
by the server, a file system that stops answering for one scan's data set (a FIFO where its
file goes: opening it hangs, as on a dead NFS mount) while other scans go on.

Judged from outside: nothing lost (every file equals what a plain redis-py follower read
live), nothing stuck (every scan closed and written), the server answering throughout (the
API pinged from a thread; the loop monitor's p99, printed with ``-s``).
"""

from __future__ import annotations

import ast
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import httpx
import numpy as np
import psutil
import pytest
import redis

from blissng.writer import scan_file_path
from serverkit import ScanFollower, ServerProcess, assert_file_matches, folder_on_another_mount

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCANS_PER_ROUND = 100
SCAN = "loopscan(8, 0.001, diode, mca, display=False)"  # 8 spectra of 1024 bins: 32 kB a scan
TTL = 8  # seconds, the scans' keys after they are written (300 by default)
HEADROOM = 4 * 2**20  # bytes the data Redis may hold beyond what it holds at rest


class Pings:
    """The HTTP API asked every 0.1 s from a thread, as a GUI polls it: the slowest answer."""

    def __init__(self, demo: ServerProcess) -> None:
        self.demo = demo
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pings", daemon=True)

    def _run(self) -> None:
        headers = {"authorization": f"Bearer {self.demo.token}"}
        with httpx.Client(base_url=self.demo.url, headers=headers, timeout=30) as http:
            while not self._stop.wait(0.1):
                started = time.monotonic()
                try:
                    http.get("/api/sessions/demo").raise_for_status()
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.monotonic() - started)

    def __enter__(self) -> Pings:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def run(demo: ServerProcess, source: str, timeout: float = 120) -> Any:
    """``source`` run in the session through the Python client; its result's value."""
    with demo.client("hour") as client:
        state = client.run("demo", source, timeout=timeout)
    return ast.literal_eval(state["result"]) if state["result"] else None


def submit(demo: ServerProcess, source: str) -> dict[str, Any]:
    with demo.client("hour") as client:
        return client.submit("demo", source)


def wait_command(demo: ServerProcess, command: dict[str, Any], timeout: float) -> None:
    with demo.client("hour") as client:
        state = client.wait("demo", command, timeout=timeout)
    assert state["state"] == "done", (state["error"], state["output"][-2000:])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)  # another process's doing: nothing to wait on


def writer_of(demo: ServerProcess) -> psutil.Process:
    return demo.child("blissng.writer")


@pytest.fixture
def data(demo: ServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(demo.redis_url("data"))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A folder on another mount than the demo's data (/dev/shm, a tmpfs)."""
    with folder_on_another_mount(tmp_path) as folder:
        yield folder


def test_an_hour_of_a_session(demo: ServerProcess, data: redis.Redis, elsewhere: Path) -> None:
    started = time.monotonic()
    log_start = len(demo.lines())
    run(demo, f"session.settings.written_ttl = {TTL}")
    before = data.config_get("maxmemory")["maxmemory"]
    data.config_set("maxmemory", int(data.info("memory")["used_memory"]) + HEADROOM)
    try:
        with ScanFollower(demo.redis_url("data")) as follower, Pings(demo) as pings:
            # 1. hundreds of scans, more than the data Redis holds: the guard trims
            run(demo, f"for _ in range({SCANS_PER_ROUND}): {SCAN}")
            # 2. the writer killed mid-round: the server starts another, which goes on. (The
            # scans go on meanwhile, unwritten: a Redis with room for a few seconds of them,
            # as any real one has; a full one refuses new scans, tests/test_data_memory.py.)
            data.config_set("maxmemory", int(data.info("memory")["used_memory"]) + 4 * HEADROOM)
            first_writer = writer_of(demo)
            command = submit(demo, f"for _ in range({SCANS_PER_ROUND}): {SCAN}")
            wait_for(lambda: len(follower.scans) > SCANS_PER_ROUND + 20, 60, "second round")
            first_writer.send_signal(signal.SIGKILL)
            wait_command(demo, command, 180)
            wait_for(lambda: writer_of(demo).pid != first_writer.pid, 30, "no new writer")
            data.config_set("maxmemory", int(data.info("memory")["used_memory"]) + HEADROOM)
            # 3. one data set's file system stops answering for one scan; the others go on
            stuck = stuck_scan(demo, follower, elsewhere)
            # every scan closed, written, and its file equals what was published
            scans = list(follower.scans)
            for scan_id in scans:
                follower.wait_closed(scan_id, timeout=60)
            for scan_id in scans:
                if scan_id != stuck:
                    assert_file_matches(follower, scan_id)
    finally:
        data.config_set("maxmemory", before)
        run(demo, "session.settings.written_ttl = 300")
    took = time.monotonic() - started
    assert follower.errors == []
    assert len(scans) >= 2 * SCANS_PER_ROUND + 2
    assert all(s["document"]["npoints"] == 8 for s in follower.scans.values())
    log = demo.lines()[log_start:]
    trims = [line for line in log if "memory guard: trimmed" in line]
    assert trims, "the memory guard never trimmed"
    assert any("writer exited" in line or "restarting" in line for line in log), log[-20:]
    assert pings.failures == []
    stats = run(demo, "loop_stats().to_dict()")
    slowest = max(pings.latencies)
    print(
        f"\nan hour of a session: {len(scans)} scans in {took:.1f} s, "
        f"{len(trims)} trims by the memory guard, API answered {len(pings.latencies)} pings "
        f"(slowest {slowest * 1e3:.0f} ms), event loop p50 {stats['p50'] * 1e3:.1f} ms "
        f"p99 {stats['p99'] * 1e3:.1f} ms max {stats['max'] * 1e3:.0f} ms "
        f"({stats['stall_count']} stalls); load {os.getloadavg()[0]:.1f}"
    )
    assert slowest < 10.0  # a GUI polling the server is never left waiting


def logged_written(demo: ServerProcess, number: int) -> bool:
    """The writer said it wrote scan ``number`` (its keys may have expired since)."""
    return any(f"scan {number} written to " in line for line in demo.lines())


def stuck_scan(demo: ServerProcess, follower: ScanFollower, elsewhere: Path) -> str:
    """A scan whose data set's file system (``elsewhere``, another mount) hangs: a FIFO where
    its file goes, whose opening never returns, as on a dead NFS mount. The scans of the
    usual file system are written meanwhile; when it answers again, the scan is written.
    Its id.

    (The FIFO is put in place while the writer is held, SIGSTOP, for the scan to run: the
    session chooses the scan's number above every file in the folder, so the FIFO can only
    come once the number is given, and before the writer opens the file.)"""
    usual = run(demo, "SCAN_SAVING.base_path")
    root = Path(
        run(demo, f'SCAN_SAVING.base_path = "{elsewhere}"; newdataset(); SCAN_SAVING.filename')
    )
    writer = writer_of(demo)
    writer.suspend()
    try:
        run(demo, f"{SCAN}; None")
        stuck, scan = next(
            (i, s) for i, s in follower.scans.items() if s["document"]["path"] == str(root)
        )
        number = scan["document"]["number"]
        fifo = scan_file_path(scan["document"])
        os.mkfifo(fifo)
    finally:
        writer.resume()
    # the usual file system meanwhile: its scans are written while the other one hangs
    run(demo, f'SCAN_SAVING.base_path = "{usual}"; newdataset()')
    run(demo, f"for _ in range(5): {SCAN}")
    others = [s["document"]["number"] for s in follower.scans.values()]
    others = [n for n in others if n > number]
    assert len(others) == 5
    for other in others:
        wait_for(lambda other=other: logged_written(demo, other), 60, f"scan {other} not written")
    assert not logged_written(demo, number)
    # the file system answers again (the FIFO moved away, then its open returns)
    moved = fifo.with_name("answered")
    fifo.rename(moved)
    answer = threading.Thread(target=lambda: os.close(os.open(moved, os.O_WRONLY)))
    answer.start()
    answer.join(30)
    wait_for(lambda: logged_written(demo, number), 60, "the stuck scan never written")
    follower.wait_closed(stuck)
    assert_file_matches(follower, stuck)
    with h5py.File(fifo, "r", locking=False) as f:
        spectra = f[f"{number}.1"]["measurement"]["spectrum"][()]
    np.testing.assert_array_equal(spectra, follower.points(stuck, "mca:spectrum"))
    return stuck
