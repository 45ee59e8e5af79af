"""Clients that misbehave: bad requests, malformed frames, floods, escapes, huge bodies
(issue 13, findings 6, 8, 9, 10). One demo server for the module: every scenario leaves it
as it found it, and each checks that the server still serves."""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from serverkit import ServerProcess

pytestmark = pytest.mark.timeout(180)

SCAN = "ascan(roby, 0, 1, 3, 0.01, simct, mca)"


def _ws(server: ServerProcess, path: str) -> ClientConnection:
    url = server.url.replace("http", "ws", 1) + path
    return connect(url, additional_headers={"authorization": f"Bearer {server.token}"})


def _receive(ws: ClientConnection, kind: str, timeout: float = 30.0) -> Any:
    """The next message of type ``kind`` (messages of other types are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {kind!r} message within {timeout} s"
        message = json.loads(ws.recv(timeout=remaining))
        if message[0] == kind:
            return message[1]


def _api(server: ServerProcess) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"authorization": f"Bearer {server.token}"}, timeout=60
    )


# ---------------------------------------------------------------------------- plot requests


def test_bad_plot_requests_are_answered_with_an_error(demo_server: ServerProcess) -> None:
    """Finding 8: each used to raise in the server (the websocket closed with 1011)."""
    with demo_server.client() as client, _ws(demo_server, "/ws/plot/demo") as plot:
        client.run("demo", SCAN)
        scan = _receive(plot, "scan")
        assert "mca:spectrum" in scan["spectra"]
        _receive(plot, "end")
        bad = {
            '["spectrum", ["x"], 0]': "no channel",
            '["spectrum", "simct:diode", 0]': "simct:diode has no spectrums (it is a scalar",
            '["frame", "simct:diode", null]': "simct:diode has no frames (it is a scalar",
            '["frame", "mca:spectrum", 0]': "mca:spectrum has no frames",
            '["spectrum", "mca:spectrum", -1]': "negative index",
            '["spectrum", "mca:spectrum", 1e300]': "malformed request",
            '["spectrum", "mca:spectrum", 1' + "0" * 300 + "]": "malformed request",
            '["spectrum", "mca:spectrum", 99]': "mca:spectrum[99]",
            "[" * 100_000 + "]" * 100_000: "malformed request",
            '{"not": "a list"}': "malformed request",
        }
        for request, expected in bad.items():
            plot.send(request)
            error = _receive(plot, "error")
            assert expected in error, (request[:60], error)
        plot.send('["spectrum", "mca:spectrum", 0]')  # the websocket still serves
        spectrum = _receive(plot, "spectrum")
        assert spectrum["index"] == 0 and len(spectrum["values"]) == 1024
    assert "Traceback" not in "\n".join(demo_server.lines())


def test_a_plot_tab_that_closes_while_it_is_answered_ends_only_that_plot(
    demo_server: ServerProcess,
) -> None:
    """A request and the closing frame in one TCP segment: the server answers a websocket that
    is already closing, so the send fails inside the plot's task groups. That failure reached
    the ASGI server as an exception group and was logged as a traceback (CI of stop 18, where
    a hundred tabs closed at once while a scan streamed to them)."""
    start = len(demo_server.lines())
    with demo_server.client() as client:
        client.run("demo", SCAN)
        with _ws(demo_server, "/ws/plot/demo") as plot:
            _receive(plot, "end")
            plot.protocol.send_text(b'["spectrum", "mca:spectrum", 0]')
            plot.protocol.send_close()
            plot.socket.sendall(b"".join(plot.protocol.data_to_send()))  # both frames at once
            with pytest.raises(ConnectionClosed):  # the server ends the closing handshake
                while True:
                    plot.recv(timeout=30)
        assert client.run("demo", "1 + 1")["result"] == "2"
    lines = demo_server.lines()[start:]
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)[-6000:]


# ---------------------------------------------------------------------------- the API


def test_a_command_with_a_nan_timeout_is_refused_and_does_not_run(
    demo_server: ServerProcess,
) -> None:
    """Finding 9: ``{"timeout": NaN}`` answered 500 with a traceback, and the command ran."""
    with _api(demo_server) as api:
        for timeout in ("NaN", "Infinity", "-1", '"soon"', "true"):
            body = '{"source": "nan_ran = True", "timeout": ' + timeout + "}"
            reply = api.post(
                "/api/sessions/demo/commands",
                content=body,
                headers={"content-type": "application/json"},
            )
            assert reply.status_code == 400, (timeout, reply.text)
            assert "timeout" in reply.json()["error"]
        reply = api.post("/api/sessions/demo/commands", json={"source": "nan_ran = 1", "wait": 3})
        assert reply.status_code == 400 and "wait" in reply.json()["error"]
        ran = api.post("/api/sessions/demo/commands", json={"source": "'nan_ran' in globals()"})
        assert ran.json()["result"] == "False"
        reply = api.get("/api/sessions/demo/commands/1?wait=nan")
        assert reply.status_code in (400, 404), reply.text


def test_a_huge_body_is_refused_before_it_is_read(demo_server: ServerProcess) -> None:
    """Finding 10: an authenticated 50 MB POST was read whole before the 413."""
    host, port = urlsplit(demo_server.url).hostname, urlsplit(demo_server.url).port
    assert host is not None and port is not None
    head = (
        "POST /api/sessions/demo/commands HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nAuthorization: Bearer {demo_server.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head.encode() + b'{"source": "' + b"x" * 65536)
        answer = b""  # the answer comes without the other 49.9 MB
        while b"larger than" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413"), answer[:300]
    assert "larger than 1048576" in answer, answer[:300]
    with _api(demo_server) as api:  # streamed without a length: cut at the limit too
        chunks = (b"x" * 65536 for _ in range(100))
        reply = api.post("/api/sessions/demo/commands", content=chunks)
        assert reply.status_code == 413, reply.text
        deep = api.post("/api/sessions/demo/commands", content="[" * 100_000 + "]" * 100_000)
        assert deep.status_code == 400, deep.text


def test_a_host_header_with_trailing_text_is_refused(demo_server: ServerProcess) -> None:
    """Finding 10: ``Host: [::1]evil.example`` was taken for the loopback ``[::1]``."""
    with _api(demo_server) as api:
        for host in ("[::1]evil.example", "[::1]:80evil", "localhost evil", "127.0.0.1:x"):
            reply = api.get("/api/server", headers={"host": host})
            assert reply.status_code in (400, 403), (host, reply.status_code)
        assert api.get("/api/server", headers={"host": "[::1]:8765"}).status_code == 200


def test_api_text_is_echoed_into_consoles_without_its_escapes(demo_server: ServerProcess):
    """Finding 10: the source of an API command and the X-Blissng-Client header were echoed
    raw into every console of the session, ANSI escapes included (a clear screen, a title)."""
    with _ws(demo_server, "/ws/console/demo?rows=24&cols=200") as console, _api(demo_server) as api:
        _receive(console, "hello")
        reply = api.post(
            "/api/sessions/demo/commands",
            json={"source": "x_esc = '\x1b[2J\x1b]0;pwned\x07'"},
            headers={"x-blissng-client": "gui\x1b[31mred"},
        )
        assert reply.status_code == 200, reply.text
        seen = ""
        deadline = time.monotonic() + 30
        while "x_esc" not in seen:
            assert time.monotonic() < deadline, seen[-400:]
            seen += _receive(console, "stdout")
        seen += _drain_stdout(console)
    echo = seen[seen.index("[api:") :]
    line = echo[: echo.index("x_esc") + 40]
    assert "\x1b[2J" not in line and "\x1b]0;" not in line and "\x1b[31m" not in line, repr(line)
    assert "\\x1b[2J" in line and "[api:gui\\x1b[31mred]" in line, repr(line)


def _drain_stdout(ws: ClientConnection, quiet: float = 0.5) -> str:
    text = ""
    while True:
        try:
            message = json.loads(ws.recv(timeout=quiet))
        except TimeoutError:
            return text
        if message[0] == "stdout":
            text += message[1]


def test_deeply_nested_json_closes_a_console_with_4400(demo_server: ServerProcess) -> None:
    """Finding 10: it closed with 1006 and no reason (the parser's RecursionError)."""
    with _ws(demo_server, "/ws/console/demo") as console:
        _receive(console, "hello")
        console.send("[" * 100_000 + "]" * 100_000)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                console.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400 and "nested" in closed.value.rcvd.reason


# ---------------------------------------------------------------------------- events


@contextmanager
def _events(server: ServerProcess, count: int) -> Iterator[list[ClientConnection]]:
    with ExitStack() as stack:
        sockets = [
            stack.enter_context(_ws(server, "/api/events?session=demo")) for _ in range(count)
        ]
        for ws in sockets:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"
        yield sockets


def test_each_events_client_gets_each_position_change_once(demo_server: ServerProcess):
    """Finding 6: with N events clients, each got every position event N times (every
    websocket ran a watcher publishing into the bus all of them share)."""
    with demo_server.client() as client, _events(demo_server, 5) as sockets:
        client.run("demo", "mv(roby, 0.5)")
        client.run("demo", "mv(roby, 0.25)")
        seen = []
        for ws in sockets:
            roby = []
            deadline = time.monotonic() + 30
            while not roby or (roby[-1]["position"], roby[-1]["state"]) != (0.25, "READY"):
                assert time.monotonic() < deadline, roby
                event = json.loads(ws.recv(timeout=30))
                if event["type"] == "positions" and "roby" in event["motors"]:
                    roby.append(event["motors"]["roby"])
            time.sleep(0.3)  # three position periods: no copy comes late
            while True:
                try:
                    event = json.loads(ws.recv(timeout=0.05))
                except TimeoutError:
                    break
                if event["type"] == "positions" and "roby" in event["motors"]:
                    roby.append(event["motors"]["roby"])
            repeated = [a for a, b in itertools.pairwise(roby) if a == b]
            assert not repeated, roby  # each change once, not once per client
            seen.append(roby[1:])  # after the snapshot, every client saw the same changes
        assert all(changes == seen[0] for changes in seen), seen


def test_a_slow_events_subscriber_loses_its_oldest_events_not_its_newest() -> None:
    """Finding 6: the docstring said the oldest were dropped; the code dropped the newest."""
    from blissng.session import ServerEvents

    events = ServerEvents(buffer=3)
    with events.subscribe() as subscriber:
        for index in range(5):
            events.publish({"index": index})
        kept = [subscriber.receive.receive_nowait()["index"] for _ in range(3)]
    assert kept == [2, 3, 4] and subscriber.dropped == 2
