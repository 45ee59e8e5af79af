"""``blissng shell SESSION`` in a real pseudo-terminal: a process attached over the websocket.

(Run as ``python -m blissng shell``, the ``blissng shell`` command.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from blissng.shell import ShellHub, SimpleSession
from blissng.web import ConsoleClient, ServerThread, WebSecurity, create_app
from ptys import PtyProcess

TOKEN = "remote-token"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    app = create_app(
        ShellHub(log_dir=tmp_path / "logs"),
        security=WebSecurity(token=TOKEN),
        sessions=[SimpleSession("lab")],
    )
    with ServerThread(app, uds=tmp_path / "web.sock") as server:
        yield server


@pytest.mark.timeout(90)
def test_terminal_attaches_to_a_running_server_and_ctrl_c_works(server: ServerThread) -> None:
    shell = PtyProcess("lab", "--url", f"unix:{server.uds}", "--token", TOKEN)
    try:
        shell.expect("lab [1]:")
        shell.send("6*7\r")
        shell.expect("42")
        shell.send("import time; time.sleep(60)\r")
        # a browser tab on the same session sees the server is serving meanwhile
        with ConsoleClient.open(server, "lab", token=TOKEN) as tab:
            assert "Out [" in tab.run("1 + 1")
        shell.send("\x03")
        shell.expect("KeyboardInterrupt")
        shell.send("\x04")  # Ctrl-D at the prompt closes the console and the client
        assert shell.wait() == 0
    finally:
        shell.kill()


@pytest.mark.timeout(90)
def test_wrong_token_is_a_clear_error(server: ServerThread) -> None:
    shell = PtyProcess("lab", "--url", f"unix:{server.uds}", "--token", "wrong")
    try:
        text = shell.expect("refused")
        assert "token" in text
        assert shell.wait() == 2
    finally:
        shell.kill()


@pytest.mark.timeout(90)
def test_standalone_starts_its_own_server() -> None:
    shell = PtyProcess("--standalone", "solo")
    try:
        shell.expect("solo [1]:")
        shell.send("print('standalone-' + 'ok')\r")
        shell.expect("standalone-ok")
        shell.send("\x04")
        assert shell.wait() == 0
    finally:
        shell.kill()


@pytest.mark.timeout(90)
def test_shell_finds_the_running_server_by_its_connection_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    from typing import Any

    from anyio.from_thread import start_blocking_portal

    from blissng.web import WebOptions, run_web_shell

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    state_dir = tmp_path / "state" / "blissng" / "lab-server"

    async def serve(*, task_status: Any) -> None:
        async with SimpleSession("lab") as lab:
            await run_web_shell(
                [lab], options=WebOptions(), state_dir=state_dir, task_status=task_status
            )

    with start_blocking_portal() as portal:
        future, url = portal.start_task(serve)
        try:
            assert "/?token=" in url and url.startswith("http://127.0.0.1:")
            assert f"web shell: {url}" in capsys.readouterr().out
            connection = state_dir / "web.json"
            assert oct(connection.stat().st_mode & 0o777) == "0o600"
            assert json.loads(connection.read_text())["token"] == url.split("token=")[1]
            # the reported URL works as is (its token included)
            with_token = PtyProcess("lab", "--url", url)
            try:
                with_token.expect("lab [1]:")
            finally:
                with_token.kill()
            shell = PtyProcess("lab")  # no --url: found through the connection file
            try:
                shell.expect("lab [1]:")
                shell.send("'found-' + 'server'\r")
                shell.expect("found-server")
                shell.send("\x04")
                assert shell.wait() == 0
            finally:
                shell.kill()
        finally:
            future.cancel()
    assert not (state_dir / "web.json").exists()  # removed when the server stops
