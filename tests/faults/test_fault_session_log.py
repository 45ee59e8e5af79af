"""The session log cannot be written: the server goes on, the text is kept and written later
(issue 13, finding 2: an OSError of the log writer used to end the server within 0.2 s)."""

from __future__ import annotations

import shutil
import time

import pytest

from blissng.shell import SessionLog
from serverkit import ServerProcess

pytestmark = pytest.mark.timeout(120)


@pytest.mark.anyio
async def test_a_log_that_cannot_be_written_keeps_its_text_and_catches_up(tmp_path):
    blocked = tmp_path / "logs"
    blocked.write_text("a file where the log directory should be")  # mkdir: OSError
    log = SessionLog(blocked / "demo.log", max_pending=100)
    log.command("c1", "print('x' * 300)")
    log.output("y" * 200 + "\n")
    await log.flush()  # fails: kept, not raised
    assert log.error is not None
    assert log.lost > 0  # beyond max_pending: the oldest characters go first, counted
    lost = log.lost
    blocked.unlink()
    await log.flush(force=True)
    assert log.error is None and log.lost == 0
    text = (blocked / "demo.log").read_text()
    assert f"[... {lost} characters of this log were lost" in text
    assert text.endswith("y" * 99 + "\n")  # the newest text is all there
    log.output("after\n")
    await log.flush()
    assert (blocked / "demo.log").read_text().endswith("after\n")


def test_the_server_goes_on_when_its_session_log_cannot_be_written(demo_server: ServerProcess):
    server = demo_server
    log_file = server.state_dir / "logs" / "demo.log"
    with server.client() as client:
        client.run("demo", "print('before the fault')")
        deadline = time.monotonic() + 30
        while "before the fault" not in _read(log_file):
            assert time.monotonic() < deadline, "the session log was never written"
            time.sleep(0.05)  # written by the server every 0.2 s
        # The log file turns into something no one can append to (root included).
        saved = log_file.read_text()
        log_file.unlink()
        log_file.mkdir()
        start = len(server.lines())
        try:
            for index in range(3):
                client.run("demo", f"print('during the fault {index}')")
            server.wait_for_line("cannot be written", start=start)
            assert server.alive()
            assert client.run("demo", "1 + 1")["result"] == "2"
        finally:
            shutil.rmtree(log_file)
            log_file.write_text(saved)
        # Retried every 5 s: the text written meanwhile lands in the file, once.
        server.wait_for_line("is written again", start=start, timeout=60)
        text = _read(log_file)
        lines = text.splitlines()
        for index in range(3):  # the command's echo and its output: each once, not lost, not twice
            assert lines.count(f"[api:faults] print('during the fault {index}')") == 1
            assert lines.count(f"during the fault {index}") == 1
    assert server.alive()


def _read(path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, IsADirectoryError):
        return ""
