"""The console websocket protocol, driven over a real socket (uvicorn in a thread).

Each test talks to the app like a browser tab does (docs/webshell.md): JSON messages, the
console's output as terminal text, status messages telling when a command runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blissng.shell import ShellHub, SimpleSession, current_console
from blissng.web import ConsoleClient, ServerThread, WebSecurity, close_reason, create_app

TOKEN = "test-token-123"


def _terminal_size() -> tuple[int, int]:
    console = current_console.get()
    assert console is not None
    return console.size.rows, console.size.columns


class Info:
    def __info__(self) -> str:
        return "INFO-TEXT of the object"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server for the module: sessions s1 and s2, a unix socket, logs in a temp dir."""
    base = tmp_path_factory.mktemp("web")
    hub = ShellHub(log_dir=base / "logs", max_consoles=64)
    sessions = [
        SimpleSession(
            "s1",
            {"term_size": _terminal_size, "info_obj": Info(), "unique_completion_target": 41},
        ),
        SimpleSession("s2", {}),
    ]
    security = WebSecurity(token=TOKEN, allowed_origins=frozenset({"http://gui.example.org"}))
    app = create_app(hub, security=security, sessions=sessions, max_connections=12)
    with ServerThread(app, uds=base / "web.sock") as server:
        yield {"server": server, "hub": hub, "logs": base / "logs"}


@pytest.fixture
def server(web: dict[str, Any]) -> ServerThread:
    return web["server"]


def open_console(server: ServerThread, session: str = "s1", **params: Any) -> ConsoleClient:
    return ConsoleClient.open(server, session, token=TOKEN, **params)


def test_input_is_evaluated_and_prompt_shows_session(server: ServerThread) -> None:
    with open_console(server) as tab:
        assert tab.hello["session"] == "s1" and tab.hello["mode"] == "control"
        tab.expect(r"s1 \[1\]: ")
        out = tab.run("6*7")
        assert "Out [1]: 42" in out
        out = tab.run("x = 5; print('x is', x + 1)")
        assert "x is 6" in out


def test_resize_follows_the_client(server: ServerThread) -> None:
    with open_console(server, rows=30, cols=100) as tab:
        assert "(30, 100)" in tab.run("term_size()")
        tab.send("resize", 40, 132)
        assert "(40, 132)" in tab.run("term_size()")


def test_ctrl_c_interrupts_a_sleeping_command_only(server: ServerThread) -> None:
    with open_console(server) as tab, open_console(server) as other:
        tab.type("import time; time.sleep(60); print('NOT' + 'REACHED')\r")
        tab.wait_status(busy=True)
        started = time.monotonic()
        tab.type("\x03")
        tab.wait_status(busy=False, timeout=10)
        assert time.monotonic() - started < 5
        tab.expect("KeyboardInterrupt")
        assert "NOTREACHED" not in tab.text
        # the console, the other tab and the server go on
        assert "Out [" in tab.run("1 + 1")
        assert "Out [" in other.run("2 + 2")


def test_ctrl_c_interrupts_a_pure_python_loop(server: ServerThread) -> None:
    with open_console(server) as tab:
        tab.run("n = 0")
        tab.type("while True:\rn += 1\rif n == 1000: print('LOOP' + 'ING')\r\r")
        tab.expect("LOOPING")
        tab.type("\x03")
        tab.wait_status(busy=False, timeout=10)
        tab.expect("KeyboardInterrupt")
        assert "True" in tab.run("n > 0")


def test_await_at_the_prompt(server: ServerThread) -> None:
    with open_console(server) as tab:
        out = tab.run("import anyio; await anyio.sleep(0.01); 'awaited-' + 'ok'")
        assert "awaited-ok" in out


def test_reconnect_during_a_long_command_goes_on(server: ServerThread) -> None:
    tab = open_console(server)
    console_id = tab.console_id
    tab.type(
        "import time\r"
        "for i in range(6): print('step', i); time.sleep(0.2)\r\r"
        "print('DONE' + '-LOOP')\r"
    )
    tab.expect("step 1")
    tab.close()  # the page reloads
    again = open_console(server, console=console_id)
    try:
        assert again.console_id == console_id
        again.expect("step 0")  # the scrollback is replayed
        again.expect("DONE-LOOP", timeout=20)  # and the command went on
        text = again.text
        assert all(f"step {i}" in text for i in range(6))
    finally:
        again.close()


def test_two_tabs_on_one_session_share_its_namespace(server: ServerThread) -> None:
    with open_console(server) as a, open_console(server) as b:
        assert a.console_id != b.console_id
        a.run("shared_value = 'from-tab-a'")
        assert "from-tab-a" in b.run("shared_value")


def test_two_tabs_on_one_console_see_the_same_output(server: ServerThread) -> None:
    with open_console(server) as a:
        with open_console(server, console=a.console_id) as b:
            b.mark()
            a.run("print('SEEN' + '-BY-BOTH')")
            b.expect("SEEN-BY-BOTH")


def test_read_only_viewer_sees_but_cannot_type(server: ServerThread) -> None:
    with open_console(server) as tab:
        with open_console(server, console=tab.console_id, mode="view") as viewer:
            assert viewer.hello["mode"] == "view"
            viewer.mark()
            tab.run("print('visible' + '-to-viewer')")
            viewer.expect("visible-to-viewer")
            viewer.type("viewer_was_here = 1\r")
            viewer.send("ping", 1)  # the pong proves the stdin before it was handled
            while not viewer.pongs:
                viewer.receive(5)
            assert "False" in tab.run("'viewer_was_here' in dir()")


def test_viewer_needs_an_existing_console(server: ServerThread) -> None:
    ws = server.connect("/ws/console/s1", token=TOKEN, mode="view", console="nope")
    code, reason = close_reason(ws)
    assert code == 4404
    assert "no console 'nope'" in reason


def test_output_is_isolated_between_sessions(server: ServerThread) -> None:
    with open_console(server, "s1") as one, open_console(server, "s2") as two:
        two.mark()
        one.run("import threading, anyio.to_thread\rdef shout(): print('S1-' + 'THREAD')\r\r")
        one.run("await anyio.to_thread.run_sync(shout); print('S1-' + 'DIRECT')")
        one.expect("S1-THREAD")
        one.expect("S1-DIRECT")
        two.run("print('S2-' + 'ONLY')")
        assert "S1-" not in two.text
        assert "S2-ONLY" not in one.text


def test_blocking_user_code_does_not_delay_another_console(server: ServerThread) -> None:
    # The busy console sleeps far longer than any loaded machine delays an answer: the other
    # console answers while it still sleeps (waiting for it would take 60 s).
    with open_console(server) as busy, open_console(server, "s2") as other:
        busy.type("import time; time.sleep(60); print('SLEPT' + '-OUT')\r")
        busy.wait_status(busy=True)
        started = time.monotonic()
        out = other.run("3 * 3")
        elapsed = time.monotonic() - started
        assert "9" in out
        assert elapsed < 20, f"another console waited {elapsed:.2f} s"
        assert "SLEPT-OUT" not in busy.text
        busy.type("\x03")
        busy.wait_status(busy=False, timeout=10)


def test_friendly_errors_and_last_error(server: ServerThread) -> None:
    with open_console(server) as tab:
        out = tab.run("1/0")
        assert "!!! === ZeroDivisionError: division by zero === !!!" in out
        assert "last_error()" in out
        assert "Traceback" not in out
        out = tab.run("last_error()")
        assert "Traceback" in out and "ZeroDivisionError" in out


def test_info_is_shown_for_objects(server: ServerThread) -> None:
    with open_console(server) as tab:
        assert "INFO-TEXT of the object" in tab.run("info_obj")


def test_stdin_readers_are_refused_and_shell_escapes_do_not_use_stdin(
    server: ServerThread,
) -> None:
    with open_console(server) as tab:
        assert "input() is not available" in tab.run("input('name? ')")
        assert "breakpoint()/pdb is not available" in tab.run("breakpoint()")
        assert "standard input is not available" in tab.run("import sys; sys.stdin.readline()")
        assert "hello-from-shell" in tab.run("!echo hello-from-shell")
        assert "interactive help() is not available" in tab.run("help()")
        assert "Return the absolute value" in tab.run("help(abs)")


def test_session_log_has_commands_and_output(web: dict[str, Any]) -> None:
    with open_console(web["server"], "s2") as tab:
        tab.run("print('logged-' + 'output')")
    log = Path(web["logs"]) / "s2.log"
    deadline = time.monotonic() + 10
    while not (log.exists() and "logged-output" in log.read_text()):
        assert time.monotonic() < deadline, "the log file did not get the output"
        time.sleep(0.05)
    text = log.read_text()
    assert ">>> print('logged-' + 'output')" in text


def test_tab_completes_names_of_the_namespace(server: ServerThread) -> None:
    with open_console(server) as tab:
        tab.expect(r"s1 \[\d+\]: ")
        tab.type("unique_compl")
        tab.expect("unique_completion_target")  # the menu pops up after a pause in typing
        tab.type("\t")
        assert "Out [" in tab.run(" + 1")
        assert "42" in tab.text
