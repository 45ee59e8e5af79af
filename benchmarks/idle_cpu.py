"""Idle cost of a running server: CPU % of ``blissng demo`` at rest, one console attached.

``blissng demo --headless`` starts (its own Redis, simulators and writer); once it is ready,
one console attaches over the websocket as a browser tab does, and waits at its prompt. Then
nothing happens for ``seconds``: the figure is the CPU time the server process (blissng
itself) used meanwhile, in % of one core; its children (Redis, the simulators' host, the
writer) are reported apart. Baseline, over the same seconds: a bare ``anyio`` event loop
sleeping in a process of its own. Target: <= 1 % (issue 12). Several windows are measured;
the median and the range are printed.

    python benchmarks/idle_cpu.py [seconds per window]
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _figures import figure, median, sized, spread
from websockets.sync.client import connect

from blissng.web import ConsoleClient

BENCHMARK = "idle_cpu"
BLISSNG = Path(sys.executable).parent / "blissng"
COMMAND = [str(BLISSNG)] if BLISSNG.exists() else [sys.executable, "-m", "blissng"]
WINDOWS = sized(3, 1)
BARE_LOOP = "import anyio, sys; anyio.run(anyio.sleep, float(sys.argv[1]))"


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def children_cpu(root: psutil.Process) -> dict[str, float]:
    """CPU seconds of each child of the server, by a short name."""
    found: dict[str, float] = {}
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            line = " ".join(child.cmdline())
            name = (
                "redis"
                if "redis-server" in line
                else "writer"
                if "writer" in line
                else "simulators"
                if "sim" in line
                else child.name()
            )
            found[name] = found.get(name, 0.0) + cpu_seconds(child)
    return found


def start_demo(state_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "BLISSNG_REDIS_URL"}
    env["XDG_STATE_HOME"] = str(state_dir / "xdg")
    proc = subprocess.Popen(
        [*COMMAND, "demo", "--headless", "--port", "0", "--state-dir", str(state_dir / "demo")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    seen = b""
    while b" ready " not in seen:
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"blissng demo did not get ready: {seen.decode()[-2000:]}")
        seen += line
    return proc


def attach_console(state_dir: Path) -> ConsoleClient:
    """One console, as a browser tab opens it, waiting at its prompt."""
    connection = json.loads((state_dir / "demo" / "web.json").read_text())
    url = connection["url"].replace("http", "ws", 1)
    # Entered here, closed by console.close() (as blissng.web.ServerThread does).
    ws = connect(f"{url}/ws/console/demo?token={connection['token']}", max_size=None)
    console = ConsoleClient(ws.__enter__())
    console.send("resize", 40, 120)
    console.expect(r"\[\d+\]: ", timeout=60)
    return console


def measure(server: psutil.Process, console: ConsoleClient, seconds: float) -> dict[str, float]:
    """CPU % over ``seconds`` of the server, its children and a bare anyio loop."""
    bare = subprocess.Popen([sys.executable, "-c", BARE_LOOP, str(seconds + 30)])
    bare_process = psutil.Process(bare.pid)
    time.sleep(1.0)  # the bare loop has imported anyio and sleeps
    try:
        before = (cpu_seconds(server), children_cpu(server), cpu_seconds(bare_process))
        started = time.perf_counter()
        # Keep the console's websocket read (as a browser does), nothing typed.
        while time.perf_counter() - started < seconds:
            console.receive(min(0.5, seconds - (time.perf_counter() - started)) or 0.01)
        elapsed = time.perf_counter() - started
        after = (cpu_seconds(server), children_cpu(server), cpu_seconds(bare_process))
    finally:
        bare.kill()
        bare.wait()
    result = {
        "server": 100 * (after[0] - before[0]) / elapsed,
        "bare": 100 * (after[2] - before[2]) / elapsed,
    }
    for name, value in after[1].items():
        result[name] = 100 * (value - before[1].get(name, 0.0)) / elapsed
    return result


def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="blissng-idle-") as tmp:
        state_dir = Path(tmp)
        proc = start_demo(state_dir)
        try:
            server = psutil.Process(proc.pid)
            console = attach_console(state_dir)
            time.sleep(sized(5.0, 0.5))  # start-up work settles (imports, first reads)
            rounds = [measure(server, console, seconds) for _ in range(WINDOWS)]
            console.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    servers = [r["server"] for r in rounds]
    bares = [r["bare"] for r in rounds]
    figure(BENCHMARK, "server_idle_cpu", median(servers), "%", baseline=median(bares),
           target="<= 1", note=f"{spread(servers, '.2f')}; baseline: a bare anyio loop "
           f"sleeping; {seconds:g} s windows, one console attached")  # fmt: skip
    for name in sorted({k for r in rounds for k in r} - {"server", "bare"}):
        values = [r.get(name, 0.0) for r in rounds]
        figure(BENCHMARK, f"{name}_idle_cpu", median(values), "%", baseline=None,
               note=spread(values, ".2f"))  # fmt: skip


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else sized(20.0, 1.0))
