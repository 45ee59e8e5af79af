"""One console everywhere, on the real demo: ``blissng demo`` started on a pseudo-terminal shows
a session console; ``blissng shell demo`` (another pty), a console websocket (a browser tab's
protocol) and the HTTP API reach the same session, with the same commands, the same devices
without ``await``, the same Ctrl-C, and the same result, output and error for the same text.

One ``blissng demo`` process serves the whole module (its start-up is the slow part).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from blissng.web import ConsoleClient
from ptys import Terminal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

READY = 120.0  # the demo's start-up: simulators, Redis, devices (13 s seen at load 15)


@dataclass
class Demo:
    terminal: Terminal
    url: str
    token: str
    env: dict[str, str]

    def console(self) -> ConsoleClient:
        """A new console of session demo over the websocket, as a browser tab opens it."""
        uri = self.url.replace("http://", "ws://") + f"/ws/console/demo?token={self.token}"
        return ConsoleClient(ws_connect(uri, open_timeout=10, max_size=None))

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {self.token}"}, timeout=60
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    base = tmp_path_factory.mktemp("demo-terminal")
    env = {k: v for k, v in os.environ.items() if k != "BLISSNG_REDIS_URL"}
    env.update(XDG_STATE_HOME=str(base / "xdg"), BLISSNG_WEB_PORT="0")
    terminal = Terminal(["demo"], env)
    try:
        terminal.expect("demo [1]: ", timeout=READY)
        info = json.loads((base / "xdg" / "blissng" / "demo" / "web.json").read_text())
        yield Demo(terminal, info["url"], info["token"], env)
        if terminal.process.poll() is None:  # Ctrl-D at an empty prompt ends the demo
            terminal.mark()
            terminal.type("\x15\x04")  # (Ctrl-U first: an empty line)
            assert terminal.wait(60) == 0
            assert "stopped" in terminal.text
    finally:
        terminal.close()


def run_on_terminal(terminal: Terminal, command: str, timeout: float = 60) -> str:
    """Type ``command`` + Enter on the demo's terminal; what it showed after the command,
    up to the next prompt."""
    terminal.mark()
    terminal.type(command + "\r")
    return terminal.expect_after(command, r"demo \[\d+\]: ", timeout=timeout)


def test_the_demo_terminal_is_a_session_console(demo: Demo) -> None:
    terminal = demo.terminal
    out = run_on_terminal(terminal, "wa()")
    assert "current positions" in out.lower() and "m1" in out and "roby" in out
    out = run_on_terminal(terminal, "m1.move(0.5); m1.position")  # no await: blocks
    assert "Out [" in out and "0.5" in out
    out = run_on_terminal(terminal, "m1.velocity = 3; m1.velocity")
    assert "3" in out.rsplit("Out [", 1)[1]
    out = run_on_terminal(terminal, "ascan(m1, 0, 1, 5, 0.01, diode)", timeout=120)
    assert "Finished: 6/6 points" in out and "!!!" not in out
    terminal.mark()
    terminal.type("loopscan(100000, 0.01, diode)\r")
    terminal.expect("loopscan 100000 0.01", timeout=60)  # its title: the scan runs
    terminal.type("\x03")  # Ctrl-C on the terminal: a keystroke for the console
    terminal.expect("KeyboardInterrupt: command aborted", timeout=60)
    out = run_on_terminal(terminal, "SCANS[-1].state")
    assert "aborted" in out
    out = run_on_terminal(terminal, "1 / 0")
    assert "!!! === ZeroDivisionError: division by zero === !!!" in out
    out = run_on_terminal(terminal, "last_error()")
    assert 'File "<stdin>", line 1' in out
    out = run_on_terminal(terminal, 'config.info("m1")')  # docs/getting-started.md
    assert "motors.yml" in out


def test_blissng_shell_reaches_the_same_session(demo: Demo) -> None:
    with demo.console() as tab:  # a browser tab sets a variable...
        tab.run("shared_by_the_session = 'seen by every console'")
    shell = Terminal(["shell", "demo"], demo.env)  # found through the connection file
    try:
        shell.expect("demo [1]: ")
        shell.type("shared_by_the_session\r")  # ...another console sees it
        shell.expect("seen by every console")
        shell.mark()
        shell.type("m1.move(1.5); m1.position\r")
        shell.expect("1.5")
        shell.mark()
        shell.type("[roi.name for roi in mca.rois]\r")
        shell.expect("['line1', 'line2', 'line3']")
        shell.mark()
        shell.type("import time; print('slee' + 'ping'); time.sleep(60)\r")
        shell.expect("sleeping")
        shell.type("\x03")
        shell.expect("KeyboardInterrupt: command aborted", timeout=30)
        shell.type("\x04")
        assert shell.wait() == 0
    finally:
        shell.close()


def test_devices_without_await_in_a_browser_console(demo: Demo) -> None:
    with demo.console() as tab:
        out = tab.run("m2.limits = (-5, 5); m2.limits")
        assert "(-5.0, 5.0)" in out
        out = tab.run("m2.move(6)")
        assert "outside the software limits" in out  # checked before anything moves
        tab.run("m2.velocity = 0.5")
        try:
            tab.type("m2.move(4)\r")
            tab.wait_status(busy=True)
            tab.expect(r"m2\.move\(4\)")
            tab.type("\x03")  # Ctrl-C stops the motor
            tab.wait_status(busy=False, timeout=30)
            tab.expect("KeyboardInterrupt: command aborted")
            out = tab.run("m2.state.value, m2.position < 4")
            assert "('READY', True)" in out
        finally:
            tab.run("m2.velocity = 5; m2.limits = (None, None); m2.move(0)", timeout=60)


# Inputs typed at a console and sent to the API: the same text gives the same outcome.
SAME_TEXT = [
    "print('x'); 1 + 1",
    "import sys; print('to stderr', file=sys.stderr); 'done'",
    "x_table = 21",
    "x_table * 2",
    "print(*range(3), sep='\\n')",
    "[m.name for m in (m1, m2)]",
    "import asyncio; await asyncio.sleep(0.01); 'awaited'",
    "1 / 0",
    "undefined_name_in_the_table",
    "raise ValueError('bad value')",
    "m1.move(0.25); m1.position",
]


def _api_command(http: httpx.Client, source: str) -> dict[str, Any]:
    reply = http.post("/api/sessions/demo/commands", json={"source": source, "timeout": 60})
    assert reply.status_code == 200, reply.text
    state: dict[str, Any] = reply.json()
    return state


def _console_command(
    http: httpx.Client, tab: ConsoleClient, source: str
) -> tuple[dict[str, Any], str]:
    """The console's command as the session recorded it (listed for every origin), and what
    the console showed."""
    shown = tab.run(source, timeout=60)
    listed = http.get("/api/sessions/demo/commands").json()["commands"]
    mine = [c for c in listed if c["origin"] == tab.console_id and c["text"] == source]
    assert mine, listed
    state: dict[str, Any] = http.get(f"/api/sessions/demo/commands/{mine[-1]['id']}").json()
    return state, shown


def test_a_console_and_the_api_give_the_same_result_output_and_error(demo: Demo) -> None:
    with demo.api() as http, demo.console() as tab:
        for source in SAME_TEXT:
            api = _api_command(http, source)
            console, shown = _console_command(http, tab, source)
            same = ("state", "result", "error", "output")
            assert {k: console[k] for k in same} == {k: api[k] for k in same}, source
            if api["output"]:  # and the console showed it
                assert api["output"].splitlines()[0] in shown, source
            if api["error"]:
                assert f"!!! === {api['error']} === !!!" in shown, source
            elif api["result"] is not None:
                assert "Out [" in shown, source
        assert api["origin"] == "api" and console["origin"] == tab.console_id
        # A syntax error is refused before anything runs (a console's prompt does not even
        # accept the line: ptpython's validator shows the error under it).
        refused = http.post("/api/sessions/demo/commands", json={"source": "1 +"})
        assert refused.status_code == 400
        assert refused.json()["error"] == "SyntaxError: invalid syntax (line 1)"
