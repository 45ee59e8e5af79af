"""`blissng serve` as a process: its sessions reachable through the API (the connection file),
a scan running when SIGTERM arrives, and a clean shutdown that leaves no process behind (the
writer, Redis); `blissng writer`/`blissng worker` delegate to the services' command lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from blissng.client import connect
from test_server import CONFIG, SESSIONS

READY = 90.0  # seconds; a loaded shared 2-core machine is slow to start Python processes


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> dict:
    """The connection file, once the server wrote it (it is written when the web app is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"blissng serve exited with {proc.returncode} before it was ready")
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.1)  # polling a file another process writes: nothing to wait on
    raise AssertionError(f"no {path} within {timeout} s")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_serve_runs_the_sessions_and_stops_cleanly_on_sigterm(tmp_path, write_config, config_dir):
    write_config("beamline.yml", CONFIG)
    write_config("server.yml", SESSIONS)
    state = tmp_path / "state"
    log = (tmp_path / "serve.log").open("wb")
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1"}
    env.pop("BLISSNG_REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "blissng", "serve", "--config", str(config_dir),
         "--state-dir", str(state), "--port", "0", "--headless"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        connection = _wait_for_file(state / "web.json", proc, READY)
        assert connection["pid"] == proc.pid
        server = psutil.Process(proc.pid)
        with connect(path=state / "web.json", name="test") as client:
            assert sorted(s["name"] for s in client.sessions()) == ["alpha", "beta"]
            info = client.server()
            assert sorted(info["background"]) == ["heater_pid", "watch"]
            writer_pid = info["writer"]["pid"]
            client.run("alpha", "mv(m1, 0.5)")
            assert client.positions("alpha")["m1"] == 0.5
            # A long move in flight when the server is told to stop.
            client.submit("beta", "mv(slow, 50)")
            deadline = time.monotonic() + 30
            while client.objects("beta")["slow"]["state"] != "MOVING":
                assert time.monotonic() < deadline, client.objects("beta")["slow"]
                time.sleep(0.05)
        children = server.children(recursive=True)
        names = sorted(" ".join(c.cmdline()) for c in children)
        assert any("blissng.writer" in n for n in names), names
        assert any("redis-server" in n for n in names), names
        assert writer_pid in [c.pid for c in children]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        assert code == 0
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
        output = (tmp_path / "serve.log").read_text()
        assert "server stopping" in output and "server stopped" in output
        assert "Traceback" not in output, output
        assert not (state / "web.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_writer_and_worker_commands_delegate(tmp_path):
    for command, expected in (("writer", "--redis"), ("worker", "--queue")):
        result = subprocess.run(
            [sys.executable, "-m", "blissng", command, "--help"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout, result.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "blissng", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "writer" in listed.stdout and "worker" in listed.stdout
