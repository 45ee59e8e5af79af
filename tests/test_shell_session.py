"""Consoles on a real blissng Session: scans typed in a console over the websocket.

The session runs simulated in-process motors and counters; its scans publish to the test's
Redis. What is checked is what a user sees: the live table, Ctrl-C aborting a scan cleanly,
a page reload not aborting a scan, wa() and friendly errors.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beamlines import MOCKUP_BEAMLINE
from blissng.config import Config
from blissng.redisdb import RedisUrls
from blissng.session import Session
from blissng.shell import ShellHub
from blissng.web import ConsoleClient, ServerThread, WebSecurity, create_app

TOKEN = "session-token"

CONFIG = MOCKUP_BEAMLINE


@pytest.fixture
def served(
    write_config: Any, config_dir: Path, redis_urls: RedisUrls, tmp_path: Path
) -> Iterator[ServerThread]:
    write_config("beamline.yml", CONFIG)
    session = Session(
        "demo",
        config=Config(config_dir),
        redis=redis_urls,
        scan_saving={"base_path": str(tmp_path / "data")},
    )
    app = create_app(
        ShellHub(log_dir=tmp_path / "logs"),
        security=WebSecurity(token=TOKEN),
        sessions=[session],
        data_url=redis_urls.data,
    )
    with ServerThread(app, uds=tmp_path / "web.sock") as server:
        yield server


def open_console(server: ServerThread, **params: Any) -> ConsoleClient:
    return ConsoleClient.open(server, "demo", token=TOKEN, **params)


@pytest.mark.timeout(120)
def test_scan_shows_its_table_in_the_console(served: ServerThread) -> None:
    with open_console(served) as tab:
        out = tab.run("ascan(m1, 0, 2, 4, 0.01, diode)", timeout=60)
        assert "m1" in out and "diode" in out
        for position in ("0.5", "1.5", "2"):
            assert position in out
        assert "!!!" not in out


@pytest.mark.timeout(120)
def test_ctrl_c_aborts_a_running_scan(served: ServerThread) -> None:
    with open_console(served) as tab:
        tab.type("loopscan(100000, 0.01, sim)\r")
        tab.wait_status(busy=True)
        tab.expect(r"\n\s*5\s", timeout=30)  # a few points were counted
        started = time.monotonic()
        tab.type("\x03")
        tab.wait_status(busy=False, timeout=20)
        assert time.monotonic() - started < 10
        tab.expect("KeyboardInterrupt")
        assert "aborted" in tab.run("SCANS[-1].state", timeout=30)
        assert "Out [" in tab.run("1 + 1")


@pytest.mark.timeout(120)
def test_page_reload_does_not_abort_the_scan(served: ServerThread) -> None:
    tab = open_console(served)
    console_id = tab.console_id
    tab.type("loopscan(40, 0.05, sim)\r")
    tab.wait_status(busy=True)
    tab.expect(r"\n\s*3\s", timeout=30)
    tab.close()  # the page reloads in the middle of the scan
    again = open_console(served, console=console_id)
    try:
        again.wait_status(busy=False, timeout=60)
        assert "done" in again.run("SCANS[-1].state", timeout=30)
        assert "39" in again.text  # the last point's row, seen after reattaching
    finally:
        again.close()


@pytest.mark.timeout(120)
def test_wa_and_friendly_scan_errors(served: ServerThread) -> None:
    with open_console(served) as tab:
        out = tab.run("umv(m1, 1.5)", timeout=30)
        assert "m1" in out and "1.5" in out  # the live positions line, final value
        out = tab.run("wa()", timeout=30)
        assert "m1" in out and "m2" in out and "1.5" in out
        out = tab.run("ascan(m1, 0, 1, 2, 0.01, 'not a counter')", timeout=30)
        assert "!!! ===" in out and "last_error()" in out and "Traceback" not in out
        out = tab.run("last_error()", timeout=30)
        assert 'File "<stdin>"' in out
        assert "anyio" not in out.split("Traceback", 1)[1].split("<stdin>")[0]


@pytest.mark.timeout(120)
def test_plot_websocket_follows_the_scan_typed_in_a_console(served: ServerThread) -> None:
    import json

    plot = served.connect("/ws/plot/demo", token=TOKEN)
    try:
        with open_console(served) as tab:
            tab.type("ascan(m1, 0, 2, 10, 0.01, diode)\r")
            points: dict[str, list[float]] = {}
            description: dict[str, Any] = {}
            deadline = time.monotonic() + 60
            while True:
                kind, payload = json.loads(plot.recv(timeout=deadline - time.monotonic()))
                if kind == "scan":
                    description, points = payload, {}
                elif kind == "points":
                    for name, values in payload.items():
                        points.setdefault(name, []).extend(values)
                elif kind == "end":
                    break
            assert description["motors"] == ["axis:m1"]
            assert description["counters"] == ["sim:diode"]
            assert description["npoints"] == 11
            assert points["axis:m1"] == pytest.approx([0.2 * i for i in range(11)])
            diode = points["sim:diode"]
            assert len(diode) == 11
            assert max(diode) == diode[5]  # the simulated peak is at m1 = 1.0
            assert payload["end_reason"] == "success"
    finally:
        plot.close()


@pytest.mark.timeout(120)
def test_plot_websocket_describes_a_mesh_as_a_map(served: ServerThread) -> None:
    import json

    plot = served.connect("/ws/plot/demo", token=TOKEN)
    try:
        with open_console(served) as tab:
            tab.type("amesh(m1, 0, 2, 4, m2, 0, 1, 2, 0.01, diode)\r")
            counts: dict[str, int] = {}
            deadline = time.monotonic() + 60
            while True:
                kind, payload = json.loads(plot.recv(timeout=deadline - time.monotonic()))
                if kind == "scan":
                    description, counts = payload, {}
                elif kind == "points":
                    for name, values in payload.items():
                        counts[name] = counts.get(name, 0) + len(values)
                elif kind == "end":
                    break
            assert description["mesh"] == {"shape": [3, 5], "backnforth": False}  # the grid
            assert description["motors"] == ["axis:m1", "axis:m2"]
            assert description["npoints"] == 15
            assert counts == {"axis:m1": 15, "axis:m2": 15, "sim:diode": 15}
    finally:
        plot.close()


@pytest.mark.timeout(120)
def test_a_busy_device_names_the_console_that_holds_it(served: ServerThread) -> None:
    with open_console(served) as first, open_console(served) as second:
        first.type("loopscan(100000, 0.01, sim)\r")  # holds sim for the scan's duration
        first.wait_status(busy=True)
        first.expect(r"\n\s*3\s", timeout=30)
        out = second.run("ct(0.01, sim)", timeout=60)
        first.type("\x03")
        first.wait_status(busy=False, timeout=20)
        assert first.console_id in out, out
