"""Peers that fail: the simulator host (the beamline's hardware) stopped or killed during a
scan, clients that vanish in the middle of a message or never read (issue 13, "a fault
suite"). One demo server for the module; the scenario that kills the simulator host is the
last (it brings the motors back, not every device).

Each checks from outside: the scan's end state (a plain redis-py follower), its file point by
point, the server's log, its memory, and that the next command or scan is served.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from serverkit import ScanFollower, ServerProcess, assert_file_matches, wait_written

pytestmark = pytest.mark.timeout(240)


def _sim_host(server: ServerProcess) -> psutil.Process:
    """The process serving the demo's motors, scaler, MCA, camera and trigger box."""
    return server.child("simulators/main")


def _until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)  # another process (the server, the follower thread) does it


def _scan_of(follower: ScanFollower, command: dict[str, Any], points: int) -> str:
    """The id of the scan ``command`` started, once ``points`` of its motor were read."""

    def started() -> bool:
        return any(
            len(follower.points(ident, "axis:m1")) >= points
            for ident, scan in list(follower.scans.items())
            if "axis:m1" in scan["channels"]
        )

    _until(started, f"{points} points of {command['text']}")
    return next(i for i in follower.scans if len(follower.points(i, "axis:m1")) >= points)


def _no_fatal_line(server: ServerProcess, start: int) -> None:
    log = server.lines()[start:]
    assert server.alive(), server.tail()
    assert not [line for line in log if "blissng: error" in line], log[-20:]


# ---------------------------------------------------------------------------- the simulators


def test_the_simulator_host_stopped_mid_scan(demo_server: ServerProcess) -> None:
    """SIGSTOP of the hardware's process during a scan: the scan fails naming the device
    that stopped answering, its file holds what was published, the background monitor of
    its motor is failing, and once the process resumes the next scan and the monitor work.
    It did not: the serial motor controller kept the commands sent during the stop, answered
    them all when it resumed, and every motor command after got the reply of an earlier one
    (``?POS`` answered ``OK``) until the server restarted; the monitor stopped for good."""
    start = len(demo_server.lines())
    host = _sim_host(demo_server)
    with _scanning(demo_server) as (client, follower, command, scan_id):
        host.suspend()
        try:
            stopped = time.monotonic()
            error = _failed_truthfully(client, follower, command, scan_id)
            detected = time.monotonic() - stopped
            # The background monitor reading m1 fails with it, and waits for it.
            _until(lambda: _monitor(client)["state"] == "failing", "the monitor failing", 30)
            assert "device 'motors'" in _monitor(client)["error"]
        finally:
            host.resume()
        assert "CommTimeout" in error and "no complete reply" in error, error
        after = client.run("demo", "s = ascan(m1, 0, 1, 5, 0.01, scaler); s.state")
        assert after["result"] == "'done'", after
        assert client.run("demo", "m1.position")["result"] == "1.0"
        _until(lambda: _monitor(client)["state"] == "running", "the monitor working again", 30)
        new_id = next(i for i in follower.scans if i != scan_id)
        follower.wait_closed(new_id)
        wait_written(follower.url, new_id)
        assert_file_matches(follower, new_id)
    _no_fatal_line(demo_server, start)
    print(f"simulator host stopped: the scan failed {detected:.2f} s after the stop")


def _monitor(client: Any) -> dict[str, Any]:
    """The demo's background monitor (it reads m1 every second), as the API shows it."""
    return client.server()["background"]["monitor"]


def test_a_scan_stopped_before_it_published_gives_its_number_back(
    demo_server: ServerProcess,
) -> None:
    """Ctrl-C while a scan reads its motors' positions (their device stopped), after it took
    its number: the scan ends cancelled, never published, and leaves no reservation in the
    data directory. It left a hidden ``.<sample>_<NNNN>.reserved`` file for ever (the
    writer, which removes the others, never heard of the scan)."""
    data = demo_server.state_dir / "data-files"

    def reserved() -> set[Any]:
        return set(data.rglob(".*.reserved"))

    before = reserved()
    host = _sim_host(demo_server)
    with demo_server.client() as client:
        with ScanFollower(client.server()["redis"]["data"]) as follower:
            known = set(follower.scans)
            host.suspend()  # the position snapshot waits for m1 (2 s at most)
            try:
                command = client.submit("demo", "loopscan(5, 0.01, diode)")
                _until(lambda: reserved() - before, "the scan's number reserved", 30)
                client.cancel("demo", command)
                ended = client.wait("demo", command, timeout=60)
            finally:
                host.resume()
            assert ended["state"] == "cancelled", ended
            assert set(follower.scans) == known  # it was never published
        assert reserved() <= before
        after = client.run("demo", "s = loopscan(3, 0.01, diode); s.state")
        assert after["result"] == "'done'", after


@contextmanager
def _scanning(server: ServerProcess) -> Iterator[tuple[Any, ScanFollower, Any, str]]:
    """A scan of the serial motor ``m1`` running, followed."""
    with server.client() as client:
        with ScanFollower(client.server()["redis"]["data"]) as follower:
            command = client.submit("demo", "ascan(m1, 0, 1, 200, 0.02, diode)")
            yield client, follower, command, _scan_of(follower, command, 3)


def _failed_truthfully(client: Any, follower: ScanFollower, command: Any, scan_id: str) -> str:
    """The scan's command failed naming a device, the scan's end state says so with the
    same reason, and its file holds, point by point, what was published; the error."""
    ended = client.wait("demo", command, timeout=120)
    assert ended["state"] == "failed" and "device '" in ended["error"], ended
    closed = follower.wait_closed(scan_id)["states"][-1]
    assert closed["end_reason"] == "failed", closed
    assert closed["error"] in ended["error"], (closed, ended)
    wait_written(follower.url, scan_id)
    assert_file_matches(follower, scan_id)
    return str(ended["error"])


# ---------------------------------------------------------------------------- clients


def test_a_console_that_never_reads_costs_bounded_memory_and_no_one_else(
    demo_server: ServerProcess,
) -> None:
    """A console tab that stopped reading (a frozen browser, a dead network: its socket
    never drained) while its command prints 10 MB: the server's memory stays bounded (the
    console's output is a bounded scrollback each client reads at its own pace; a client's
    socket applies back-pressure), and other consoles are served at once."""
    server = psutil.Process(demo_server.pid)
    with demo_server.console() as other, _never_reading_console(demo_server) as stuck:
        other.run("1 + 1")
        before = server.memory_info().rss
        stuck.sendall(_frame(json.dumps(["stdin", "for i in range(100_000): print('x' * 90)\r"])))
        answered = []
        for _ in range(3):
            asked = time.monotonic()
            assert "42" in other.run("6 * 7", timeout=30)
            answered.append(time.monotonic() - asked)
        with demo_server.client() as client:  # the flood ends (printing never waits)
            _until(lambda: not _busy(client), "the flood to end", timeout=120)
        grown = (server.memory_info().rss - before) / 1e6
        assert grown < 60, f"the server grew {grown:.0f} MB for 10 MB of unread output"
    print(
        f"a console that never read 10 MB: server +{grown:.0f} MB; another console answered"
        f" in {max(answered):.2f} s at worst"
    )


@contextmanager
def _never_reading_console(server: ServerProcess) -> Iterator[socket.socket]:
    """A console websocket opened by hand on a socket with a small receive buffer, that
    never reads after the handshake (a websocket library would read in a thread)."""
    address = urlsplit(server.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect((address.hostname, address.port))
    sock.sendall(
        (
            f"GET /ws/console/demo?token={server.token} HTTP/1.1\r\nHost: {address.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)  # the handshake's answer, not a byte more
    assert answer.startswith(b"HTTP/1.1 101"), answer
    try:
        yield sock
    finally:
        sock.close()


def _frame(text: str) -> bytes:
    """One masked websocket text frame (clients mask what they send)."""
    payload = text.encode()
    mask = b"\x01\x02\x03\x04"
    size = len(payload)
    header = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0xFE]) + size.to_bytes(2)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _busy(client: Any) -> bool:
    session = next(s for s in client.sessions() if s["name"] == "demo")
    return any(c["state"] == "running" for c in session.get("commands", []))


def test_a_console_closed_in_the_middle_of_its_output(demo_server: ServerProcess) -> None:
    """The socket of a console tab dropped (no close frame) while the server is sending it
    output: the console and its command go on, a new tab attached to it sees the end, the
    server logs nothing alarming."""
    start = len(demo_server.lines())
    with demo_server.console() as tab:
        console_id = tab.console_id
        tab.type("for i in range(5_000): print('y' * 90, i)\r")
        tab.expect(r"y{90} 100\b", timeout=60)
        tab.ws.socket.shutdown(socket.SHUT_RDWR)  # the network goes, mid-message
        tab.ws.socket.close()
    from blissng.web import ConsoleClient

    with ConsoleClient(demo_server.websocket("/ws/console/demo", console=console_id)) as again:
        assert again.console_id == console_id  # the same console, attached again
        again.expect(r"y{90} 4999\b", timeout=60)
    with demo_server.client() as client:
        assert client.run("demo", "1 + 1")["result"] == "2"
    log = demo_server.lines()[start:]
    assert not [line for line in log if "Traceback" in line or " ERROR " in line], log
    _no_fatal_line(demo_server, start)


def test_an_http_request_cut_in_the_middle(demo_server: ServerProcess) -> None:
    """Clients that vanish mid-request: a body shorter than its Content-Length, headers
    never finished, a chunked body cut. The server drops each connection, runs no command,
    logs no error, and serves the next request."""
    start = len(demo_server.lines())
    address = urlsplit(demo_server.url)
    body = json.dumps({"source": "ran_from_a_cut_request = 1"}).encode()
    head = (
        f"POST /api/sessions/demo/commands HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {demo_server.token}\r\nContent-Type: application/json\r\n"
    )
    cuts = [
        (head + f"Content-Length: {len(body) + 100}\r\n\r\n").encode() + body,  # body short
        head.encode()[:-20],  # headers cut
        (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + b"400\r\n" + body,  # chunk cut
    ]
    for cut in cuts:
        with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
            sock.sendall(cut)
            sock.shutdown(socket.SHUT_WR)  # the client is gone mid-message
            answer = b"".join(iter(lambda: sock.recv(65536), b""))  # until the server closes
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    with demo_server.client() as client:
        result = client.run("demo", "'ran_from_a_cut_request' in globals()")
        assert result["result"] == "False", result
    log = demo_server.lines()[start:]
    assert not [line for line in log if "Traceback" in line or " ERROR " in line], log
    _no_fatal_line(demo_server, start)


# ---------------------------------------------------------------------------- disks


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_the_log_directory_on_a_full_disk(demo_server: ServerProcess) -> None:
    """The server's log directory (``STATE/logs``) on a disk that fills up (a real ENOSPC,
    a 64 KiB tmpfs): one warning, commands go on, and the text written meanwhile lands in
    the file, once, when space is freed."""
    logs = demo_server.state_dir / "logs"
    start = len(demo_server.lines())
    logs.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(logs)], check=True)
    try:
        filler = logs / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:
            out.write(b"\0" * 1_000_000)  # the disk is full
        with demo_server.client() as client:
            for index in range(3):
                client.run("demo", f"print('while the disk is full {index}')")
            warning = demo_server.wait_for_line("cannot be written", start=start)
            assert "No space left on device" in warning, warning
            assert client.run("demo", "1 + 1")["result"] == "2"
            filler.unlink()
            demo_server.wait_for_line("is written again", start=start, timeout=60)
        lines = (logs / "demo.log").read_text().splitlines()
        for index in range(3):
            assert lines.count(f"while the disk is full {index}") == 1, lines[-10:]
    finally:
        subprocess.run(["umount", "-l", str(logs)], check=True)
    _no_fatal_line(demo_server, start)


# ---------------------------------------------------------------------------- last: kill


@contextmanager
def _restarted(host: dict[str, Any]) -> Iterator[None]:
    """The simulator host started again as it was (same arguments, environment and
    directory: its serial line comes back at the same path), stopped at the end."""
    from blissng.sim._process import spawn_ready, stop_process

    module_at = host["cmdline"].index("-m") + 1
    process, _info = spawn_ready(
        host["cmdline"][module_at],
        host["cmdline"][module_at + 1 :],
        host["log"],
        env=host["environ"],
        what="the simulator host, again",
    )
    try:
        yield
    finally:
        stop_process(process)


def test_the_simulator_host_killed_mid_scan(demo_server: ServerProcess) -> None:
    """kill -9 of the hardware's process during a scan: the scan fails naming the device
    whose connection was lost, its file holds what was published, the server goes on
    (scans of other devices work), and once the process is back its serial motors work
    again without restarting the server. (Last of the module: the TCP devices of the
    demo come back on other ports, which the demo does not follow.)"""
    start = len(demo_server.lines())
    host = _sim_host(demo_server)
    info = {
        "cmdline": host.cmdline(),
        "environ": host.environ(),
        "log": demo_server.state_dir / "simulators" / "main" / "host.log",
    }
    with _scanning(demo_server) as (client, follower, command, scan_id):
        # The pty's name goes with its process, as a USB adapter's when it is unplugged: a
        # dangling name could be reopened onto the next pty given the same number (another
        # test's simulator), and blissng would talk to that device.
        (demo_server.state_dir / "simulators" / "main" / "motors.tty").unlink()
        host.kill()
        _failed_truthfully(client, follower, command, scan_id)
        other = client.run("demo", "s = ascan(roby, 0, 1, 5, 0.01, simct); s.state")
        assert other["result"] == "'done'", other
        failed = client.submit("demo", "umv(m1, 0.5)")
        refused = client.wait("demo", failed, timeout=60)
        assert refused["state"] == "failed" and "'motors'" in refused["error"], refused
        with _restarted(info):
            back = client.run("demo", "s = ascan(m1, 0, 1, 5, 0.01, simct); s.state")
            assert back["result"] == "'done'", back
    _no_fatal_line(demo_server, start)
