"""Resource limits: file descriptors and memory lowered with prlimit, too many tabs, raw
connections that exhaust the descriptors (issue 13, finding 3: 331 plot tabs took the 1,024
descriptors of a demo; asyncio logged ``accept() out of system resource`` 6,000 times a
second, then the server ended)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from serverkit import (
    ScanFollower,
    ServerProcess,
    assert_file_matches,
    start_server,
    wait_written,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DESCRIPTORS = 1024  # the machine of the finding
SCAN = "ascan(roby, 0, 1, 20, 0.01, simct)"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A demo started with 1,024 file descriptors (``prlimit --nofile``)."""
    yield from start_server(
        tmp_path_factory.mktemp("limits"),
        "demo",
        "--headless",
        name="demo",
        wrapper=["prlimit", f"--nofile={DESCRIPTORS}:{DESCRIPTORS}", "--"],
    )


def _ws(server: ServerProcess, path: str) -> ClientConnection:
    url = server.url.replace("http", "ws", 1) + path
    return connect(url, additional_headers={"authorization": f"Bearer {server.token}"})


def _next(ws: ClientConnection, kind: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message[0] == kind:
            return message[1]


def _open_plots_until_refused(
    server: ServerProcess, stack: ExitStack, most: int
) -> tuple[list[ClientConnection], ConnectionClosed]:
    held: list[ClientConnection] = []
    for _ in range(most):
        ws = stack.enter_context(_ws(server, "/ws/plot/demo"))
        try:
            _next(ws, "scan", timeout=60)  # an accepted plot gets the last scan at once
        except ConnectionClosed as refused:
            return held, refused
        held.append(ws)
    raise AssertionError(f"{most} plot websockets held and none refused")


def test_plot_tabs_beyond_the_limit_are_refused_and_none_held_is_lost(small: ServerProcess):
    with small.client() as client:
        client.run("demo", SCAN)  # a last scan: every accepted plot is sent it at once
        start = len(small.lines())
        with ExitStack() as stack:
            held, refused = _open_plots_until_refused(small, stack, 400)
            assert refused.rcvd is not None and refused.rcvd.code == 4429, refused
            assert "plot websockets" in refused.rcvd.reason or "descriptors" in refused.rcvd.reason
            for _ in range(30):  # refused again and again: the log says so a few times only
                with _ws(small, "/ws/plot/demo") as ws, pytest.raises(ConnectionClosed) as again:
                    ws.recv(timeout=30)
                assert again.value.rcvd is not None and again.value.rcvd.code == 4429
            refusals = [line for line in small.lines()[start:] if "refused a plot" in line]
            assert 1 <= len(refusals) <= 3, refusals
            # The server still serves, and every plot it holds follows the next scan.
            assert client.run("demo", "1 + 1")["result"] == "2"
            number = client.run("demo", SCAN)["scan"]["number"]
            for ws in held:
                scan = _next(ws, "scan")
                while scan["number"] != number:
                    scan = _next(ws, "scan")
                end = _next(ws, "end")
                assert end["end_reason"] == "success", end
        print(f"plot websockets held before the first refusal: {len(held)}, none lost")
        deadline = time.monotonic() + 60
        while True:  # the closed ones are given back: a new tab is served again
            with _ws(small, "/ws/plot/demo") as ws:
                try:
                    _next(ws, "scan", timeout=30)
                    break
                except ConnectionClosed:
                    assert time.monotonic() < deadline, "plots stay refused after the tabs closed"
                    time.sleep(0.2)
    assert len(held) >= 100


def test_connections_that_exhaust_the_descriptors_do_not_end_the_server(small: ServerProcess):
    """Raw connections that send nothing, beyond the descriptor limit: the server refuses
    what it cannot accept, says so a few times (not 6,000 a second), closes the silent ones
    after 10 s and serves again, while those clients still hold their sockets."""
    host, port = urlsplit(small.url).hostname, urlsplit(small.url).port
    start = len(small.lines())
    sockets = []
    try:
        for _ in range(DESCRIPTORS + 200):
            try:
                sockets.append(socket.create_connection((host, port), timeout=30))
            except OSError:  # refused: the server has no descriptor left, and says so
                break
        time.sleep(2.0)
        assert small.alive()
        deadline = time.monotonic() + 90
        while True:  # silent connections are closed after 10 s: it serves again
            try:
                with small.client() as client:
                    assert client.run("demo", "1 + 1")["result"] == "2"
                break
            except Exception:
                assert time.monotonic() < deadline, "the server never served again"
                time.sleep(1.0)
        recovered = time.monotonic() - deadline + 90
    finally:
        for sock in sockets:
            sock.close()
    lines = small.lines()[start:]
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)[-8000:]
    accept_lines = [line for line in lines if "accept" in line]
    assert 1 <= len(accept_lines) <= 10, accept_lines[:10]
    print(f"{len(sockets)} raw connections; serving again {recovered:.1f} s later")
    with small.client() as client:  # a scan, published and written as always
        data_url = client.server()["redis"]["data"]
        with ScanFollower(data_url) as follower:
            ended = client.run("demo", SCAN)
            assert ended["state"] == "done", ended
            scan_id = ended["scan"]["scan_id"]
            follower.wait_closed(scan_id)
            wait_written(data_url, scan_id)
            assert_file_matches(follower, scan_id)


def test_a_command_that_runs_out_of_memory_fails_and_the_server_goes_on(small: ServerProcess):
    """The address space lowered under the server's feet (``prlimit --as``): a command that
    needs more fails with MemoryError; the server, its other commands and scans go on."""
    process = psutil.Process(small.pid)
    limit = process.memory_info().vms + 512 * 2**20
    with small.client() as client:
        subprocess.run(["prlimit", f"--pid={small.pid}", f"--as={limit}:"], check=True)
        limits = Path(f"/proc/{small.pid}/limits").read_text()
        assert str(limit) in limits, limits  # lowered: 2 GiB cannot be had now
        try:
            failed = client.run("demo", "import numpy; big = numpy.ones(2**28)", timeout=120)
        except Exception as exc:  # the client raises CommandFailed with the command's state
            failed = getattr(exc, "command", {"error": repr(exc)})
        finally:
            subprocess.run(["prlimit", f"--pid={small.pid}", "--as=unlimited:"], check=True)
        assert "MemoryError" in str(failed.get("error")), failed
        assert small.alive()
        assert client.run("demo", SCAN)["state"] == "done"
