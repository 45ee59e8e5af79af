"""A blissng server as users meet it, and the outside tools that judge it: a server process,
a plain redis-py follower of scans, the scans' files. Shared by the fault suite
(``tests/faults/``) and the acceptance suite (``tests/acceptance/``).

Every scenario runs against ``blissng demo --headless`` or ``blissng serve`` as a process
(:class:`ServerProcess`), reached the way users reach it (the HTTP API, websockets, the
connection file), and is judged by outside tools: the process's log and exit code, a plain
redis-py follower of the scans (:class:`ScanFollower`), the HDF5 files read with h5py.
docs/reliability.md lists each fault, what blissng promises, and the test that shows it.

Servers are expensive to start (3 s idle, 15 s and more on a loaded machine): a test module
shares one (the ``demo_server`` fixture) wherever its scenarios leave the server as they found it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis

BLISSNG = Path(sys.executable).parent / "blissng"
COMMAND = [str(BLISSNG)] if BLISSNG.exists() else [sys.executable, "-m", "blissng"]
READY_TIMEOUT = 120.0  # seconds: the demo starts in 3 s idle; a loaded 2-core machine is slow


class ServerProcess:
    """One blissng server process: its log (a file: a pipe nobody reads would block it),
    its connection file, its children, and how it ended."""

    def __init__(
        self,
        args: list[str],
        state_dir: Path,
        *,
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
        wrapper: list[str] | None = None,
    ) -> None:
        """``wrapper``: a command the server runs under (``["prlimit", "--nofile=1024", "--"]``,
        which execs it: the process is the server's)."""
        self.state_dir = state_dir
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        environ = {k: v for k, v in os.environ.items() if k != "BLISSNG_REDIS_URL"}
        environ.update(
            PROMPT_TOOLKIT_NO_CPR="1",
            BLISSNG_WEB_PORT="0",
            BLISSNG_DATA=str(state_dir / "data-files"),
            XDG_STATE_HOME=str(state_dir / "xdg"),
        )
        environ.update(env or {})
        self._log = self.log_path.open("wb")
        self.args = [
            *(wrapper or []),
            *COMMAND,
            *args,
            "--state-dir",
            str(state_dir),
            "--port",
            "0",
        ]
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environ,
            preexec_fn=preexec,
        )
        self.connection: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def connection_file(self) -> Path:
        return self.state_dir / "web.json"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """The connection file this process wrote (it is written once the web app is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the server exited with {self.process.returncode} before it was ready:\n"
                    + self.tail()
                )
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                found = json.loads(self.connection_file.read_text())
                if found.get("pid") == self.pid:
                    self.connection = found
                    self.wait_for_line("ready in ", timeout=max(1.0, deadline - time.monotonic()))
                    return found
            time.sleep(0.05)  # another process writes the file: nothing to wait on
        raise AssertionError(f"no connection file within {timeout} s:\n{self.tail()}")

    @property
    def url(self) -> str:
        return str(self.connection["url"])

    @property
    def token(self) -> str:
        return str(self.connection["token"])

    def client(self, name: str = "faults") -> Any:
        """The blocking Python client of the API (``with server.client() as c: ...``)."""
        from blissng.client import connect

        return connect(path=self.connection_file, name=name)

    def websocket(self, path: str, **params: str) -> Any:
        """A websocket of this server (``/ws/plot/demo``), with the token, as a browser opens it."""
        from urllib.parse import urlencode

        from websockets.sync.client import connect as ws_connect

        query = urlencode({"token": self.token, **params})
        uri = self.url.replace("http://", "ws://") + f"{path}?{query}"
        return ws_connect(uri, open_timeout=30, max_size=None)

    def console(self, session: str = "demo") -> Any:
        """A new console of ``session`` over its websocket (a browser tab's console)."""
        from blissng.web import ConsoleClient

        return ConsoleClient(self.websocket(f"/ws/console/{session}"))

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines()[-count:])

    def wait_for_line(self, text: str, timeout: float = 60.0, start: int = 0) -> str:
        """The first log line (from line ``start``) containing ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines()[start:]:
                if text in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the log within {timeout} s:\n{self.tail()}")
            if self.process.poll() is not None:
                raise AssertionError(f"exited ({self.process.returncode}) before {text!r}")
            time.sleep(0.05)  # the log is a file another process writes

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def child(self, pattern: str) -> psutil.Process:
        """The one child whose command line contains ``pattern`` (``data/redis.sock``)."""
        found = [c for c in self.children() if pattern in " ".join(_cmdline(c))]
        assert len(found) == 1, [" ".join(_cmdline(c)) for c in self.children()]
        return found[0]

    def redis_url(self, role: str) -> str:
        return f"unix://{self.state_dir / role / 'redis.sock'}?db=0"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> tuple[int, float]:
        """Send ``signum``; the exit code and the seconds the process took to exit."""
        children = self.children()
        started = time.monotonic()
        if self.alive():
            self.process.send_signal(signum)
        code = self.process.wait(timeout)
        took = time.monotonic() - started
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], [" ".join(_cmdline(p)) for p in alive]
        return code, took

    def close(self) -> None:
        if self.alive():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(timeout=60)
        if self.alive():
            for child in self.children():
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            self.process.kill()
            self.process.wait()
        self._log.close()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def start_server(
    tmp: Path, *args: str, name: str = "server", **kwargs: Any
) -> Iterator[ServerProcess]:
    """A server process for a ``with``-less fixture: ready, and closed after use."""
    server = ServerProcess(list(args), tmp / name, **kwargs)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------------- scan data


class ScanFollower:
    """Follows every scan of a data Redis with plain redis-py, in a thread, as a program in
    any language would (docs/data-model.md), and keeps every point it read. It rides out
    lost connections (a Redis restart) and goes on from the last entry it read, so it holds
    what was published even when Redis loses it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scans: dict[str, dict[str, Any]] = {}  # id -> document, points, seals, end
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="scan-follower", daemon=True)
        self.errors: list[str] = []
        self._start = "0-0"  # the new-scans entry the follow starts after (set on entering)

    def __enter__(self) -> ScanFollower:
        # Where the follow starts is fixed before returning: a scan started right after
        # ``with ScanFollower(...)`` is followed (a thread slow to start used to miss it).
        client = self._connect()
        try:
            newest = client.xrevrange("blissng:scans", "+", "-", count=1)
        finally:
            client.close()
        self._start = newest[0][0].decode() if newest else "0-0"
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _connect(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def _run(self) -> None:
        client = self._connect()
        last_scan = self._start
        cursors: dict[str, str] = {}  # stream key -> last entry id read
        while not self._stop.is_set():
            try:
                streams = {"blissng:scans": last_scan, **self._open_streams(cursors)}
                found = client.xread(streams, block=200, count=1000)
                for key, entries in found or []:
                    key = key.decode()
                    for entry_id, fields in entries:
                        if key == "blissng:scans":
                            last_scan = entry_id.decode()
                            self._new_scan(client, fields[b"id"].decode(), cursors)
                        else:
                            cursors[key] = entry_id.decode()
                            self._entry(key, cursors[key], fields)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self.errors.append(repr(exc))
                client.close()
                time.sleep(0.1)  # the server is away (restarting): try again shortly
                client = self._connect()
        client.close()

    def _open_streams(self, cursors: dict[str, str]) -> dict[str, str]:
        with self._lock:
            out = {}
            for scan in self.scans.values():
                if scan["closed"]:
                    continue
                out[scan["state_key"]] = cursors.setdefault(scan["state_key"], "0-0")
                for channel in scan["channels"].values():
                    if channel["end"] is None:
                        out[channel["key"]] = cursors.setdefault(channel["key"], "0-0")
            return out

    def _new_scan(self, client: redis.Redis, scan_id: str, cursors: dict[str, str]) -> None:
        raw = client.hget(f"blissng:scan:{scan_id}", "doc")
        if raw is None or scan_id in self.scans:
            return
        document = json.loads(raw)
        channels = {
            name: {
                "key": spec["key"],
                "dtype": spec["dtype"],
                "shape": tuple(spec.get("shape") or ()),
                "batches": [],
                "next": 0,
                "end": None,
            }
            for name, spec in document["channels"].items()
            if spec.get("kind", "data") == "data"
        }
        with self._lock:
            self.scans[scan_id] = {
                "document": document,
                "state_key": f"blissng:scan:{scan_id}:state",
                "channels": channels,
                "states": [],
                "closed": False,
            }

    def _entry(self, key: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        entry_index = int(entry_id.split("-")[0])
        with self._lock:
            for scan in self.scans.values():
                if key == scan["state_key"]:
                    state = {k.decode(): v.decode() for k, v in fields.items()}
                    scan["states"].append(state)
                    if state["state"] == "closed":
                        scan["closed"] = True
                    return
                for name, channel in scan["channels"].items():
                    if channel["key"] != key:
                        continue
                    if b"end" in fields:
                        channel["end"] = int(fields[b"end"])
                        return
                    count = int(fields[b"n"])
                    if entry_index != channel["next"]:
                        self.errors.append(
                            f"{name}: entry at {entry_index}, expected {channel['next']}"
                        )
                    data = np.frombuffer(fields[b"d"], dtype=channel["dtype"])
                    channel["batches"].append(data.reshape(count, *channel["shape"]))
                    channel["next"] += count
                    return

    def points(self, scan_id: str, channel: str) -> np.ndarray:
        batches = self.scans[scan_id]["channels"][channel]["batches"]
        return np.concatenate(batches) if batches else np.empty(0)

    def wait_closed(self, scan_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The scan once its ``closed`` state was read (its channels read to their seals)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                scan = self.scans.get(scan_id)
                if scan is not None and scan["closed"]:
                    sealed = all(ch["end"] is not None for ch in scan["channels"].values())
                    if sealed:
                        return scan
            time.sleep(0.05)  # filled by the follower thread
        raise AssertionError(f"scan {scan_id} not closed within {timeout} s: {self.errors}")


def wait_written(url: str, scan_id: str, timeout: float = 120.0) -> None:
    """Wait until the writer (another process) acknowledges ``scan_id`` written, reading the
    ack hash in the data Redis at ``url`` with a plain client."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while client.hget(f"blissng:scan:{scan_id}:ack", "written") != b"1":
            assert time.monotonic() < deadline, client.hgetall(f"blissng:scan:{scan_id}:ack")
            time.sleep(0.1)  # the writer is another process: nothing to wait on here
    finally:
        client.close()


def read_scan_file(document: dict[str, Any]) -> dict[str, np.ndarray]:
    """The measurement datasets of a scan's entry in its own file (written by the writer),
    by channel name (datasets are named by the channels' labels)."""
    import h5py

    from blissng.writer import entry_name, find_scan_file, measurement_name

    path = find_scan_file(document)  # the file whose entry is this scan's, never another's
    assert path is not None, f"no file holds scan {document['id']}"
    with h5py.File(path, "r", locking=False) as file:
        entry = file[entry_name(document)]
        assert entry.attrs["blissng_scan_id"] == document["id"]
        measurement = entry["measurement"]
        return {
            name: measurement[measurement_name(document, name)][()]
            for name in document["channels"]
            if measurement_name(document, name) in measurement
        }


def assert_file_matches(follower: ScanFollower, scan_id: str) -> None:
    """Every channel in the file equals, point by point, what the follower read."""
    scan = follower.scans[scan_id]
    in_file = read_scan_file(scan["document"])
    for name, channel in scan["channels"].items():
        published = follower.points(scan_id, name)
        assert channel["end"] == len(published), (name, channel["end"], len(published))
        assert name in in_file, (name, sorted(in_file))
        np.testing.assert_array_equal(in_file[name], published, err_msg=name)


# ---------------------------------------------------------------------------- file systems


@contextlib.contextmanager
def folder_on_another_mount(beside: Path) -> Iterator[Path]:
    """A new folder on another mount than ``beside`` (/dev/shm, a tmpfs): a file system of
    its own for the writer (a stuck one there holds only its own scans); removed after."""
    folder = Path("/dev/shm") / f"blissng-test-{os.getpid()}-{beside.name}"
    assert os.stat("/dev/shm").st_dev != os.stat(beside).st_dev
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
