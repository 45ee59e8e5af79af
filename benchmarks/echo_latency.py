"""Keystroke echo latency of the web shell: 10 tabs connected, one running a scan.

A key typed in a browser tab travels as a websocket message to the server, into that console's
prompt_toolkit application, which redraws its line; the redraw comes back as terminal output.
This measures that round trip (median, 99th percentile) over a real TCP websocket, with 10
consoles connected, in rounds that alternate: the consoles idle, then another tab of the same
session running a ``loopscan`` on simulated counters (publishing to an embedded Redis).

The tabs are another process, as browsers are: clients in the server's process took the
server's GIL at every message (each of the server loop's system calls then waited for it) and
measured themselves as much as the server.

Baseline in the same run, interleaved with the keystrokes: a bare websocket echo server
(uvicorn, a raw ASGI app that sends every message back, in a process of its own), the same
message size: what the machine and the websocket transport cost at that moment, without the
console. The websocket ping/pong of the console server (the app without prompt_toolkit) is
printed beside it.

Run: ``python benchmarks/echo_latency.py``. Target: p99 <= 20 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")

from _figures import figure, sized, spread
from websockets.sync.client import ClientConnection, connect

from blissng.web import ConsoleClient, ServerThread, terminal_text

TABS = sized(10, 2)
KEYS = sized(400, 10)
ROUNDS = sized(3, 1)
TARGET_MS = 20.0
ECHO_MESSAGE = json.dumps(["stdin", "a"])  # the size of a keystroke's message
CONFIG = """
- name: motors
  class: MockupController
  instant: true
  axes:
    - name: m1
- name: sim
  class: SimCounterController
  sampling_period: 0.001
  counters:
    - name: diode
      motor: $m1
      center: 1.0
      fwhm: 0.5
      height: 100
      nsamples: 1
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ------------------------------------------------------------------ the bare echo server


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A websocket echo server and nothing else (raw ASGI: no framework, no console)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text")})


def serve_echo() -> None:
    """The echo server's process: prints its port, serves until its stdin closes."""
    with ServerThread(echo_app, port=0) as server:
        print(server.port, flush=True)
        sys.stdin.read()


# ------------------------------------------------------------------ the tabs (their process)


def drain(client: ConsoleClient, stop: threading.Event) -> None:
    """Keep reading a tab's output (the scanning tab prints its table)."""
    while not stop.is_set():
        try:
            client.receive(0.2)
        except Exception:
            return


def is_echo(output: str, typed: bool) -> bool:
    """Whether terminal output draws the key: the ``a`` typed, or its erasure (a backspace or
    an erase to the end of the line). A redraw that changes nothing on the screen (the prompt
    redraws again when its history suggestion comes back empty) is not the echo: taking the
    first output of any kind measured a late one of the previous key as the next key's echo."""
    if typed:
        return "a" in terminal_text(output)
    return "\x08" in output or "\x1b[K" in output


def measure_echo(
    client: ConsoleClient, keys: int, echo: ClientConnection
) -> tuple[list[float], list[float]]:
    """Keystroke echo samples, and as many bare echo server samples interleaved with them."""
    samples, baseline = [], []
    for i in range(keys):
        typed = i % 2 == 0  # type, erase: the line stays short
        client.send("stdin", "a" if typed else "\x7f")
        start = time.perf_counter()
        while True:
            message = client.receive(5.0)
            if message is None:
                raise RuntimeError("no echo within 5 s")
            if message[0] == "stdout" and is_echo(message[1], typed):
                break
        samples.append((time.perf_counter() - start) * 1000)
        # let the rest of this redraw arrive before the next key
        while client.receive(0.002) is not None:
            pass
        start = time.perf_counter()
        echo.send(ECHO_MESSAGE)
        echo.recv(timeout=5.0)
        baseline.append((time.perf_counter() - start) * 1000)
    return samples, baseline


def measure_ping(client: ConsoleClient, count: int) -> list[float]:
    samples = []
    for i in range(count):
        start = time.perf_counter()
        client.send("ping", i)
        while True:
            message = client.receive(5.0)
            if message is None:
                raise RuntimeError("no pong within 5 s")
            if message[0] == "pong" and message[1] == i:
                break
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def echo_during_a_scan(
    scanning: ConsoleClient, typing: ConsoleClient, echo: ClientConnection, ping: list[float]
) -> tuple[list[float], list[float]]:
    """Echo samples while another tab runs a loopscan (then aborted with Ctrl-C), with their
    baseline samples; ping/pong samples of the same moment go to ``ping``."""
    stop = threading.Event()
    drainer = threading.Thread(target=drain, args=(scanning, stop), daemon=True)
    scanning.type("loopscan(100000, 0.01, sim)\r")
    scanning.wait_status(busy=True, timeout=30)
    scanning.expect(r"\n\s*10\s", timeout=30)
    drainer.start()
    ping.extend(measure_ping(typing, KEYS // 2))
    samples = measure_echo(typing, KEYS, echo)
    if not scanning.status.get("busy"):
        raise RuntimeError("the scan ended before the echo was measured")
    scanning.type("\x03")
    stop.set()
    drainer.join(5)
    scanning.wait_status(busy=False, timeout=30)
    scanning.mark()
    return samples


def run_tabs(console_url: str, echo_url: str) -> None:
    """The tabs' process: connect, measure, print the samples as one JSON line."""
    rounds: dict[str, list[list[float]]] = {
        "idle": [],
        "scan": [],
        "idle_base": [],
        "scan_base": [],
    }
    ping: list[float] = []

    def tab() -> ConsoleClient:
        return ConsoleClient(connect(console_url, max_size=None, open_timeout=10).__enter__())

    tabs = [tab() for _ in range(TABS)]
    echo = connect(echo_url, open_timeout=10).__enter__()
    scanning, typing = tabs[0], tabs[1]
    typing.expect(r"bench \[1\]: ")
    # warm-up: first renders fill prompt_toolkit's caches
    measure_echo(typing, sized(60, 4), echo)
    print("ready", flush=True)  # the server freezes its heap now
    sys.stdin.readline()
    for _ in range(ROUNDS):  # alternate: idle, then during a scan
        idle, idle_base = measure_echo(typing, KEYS // 2, echo)
        rounds["idle"].append(idle)
        rounds["idle_base"].append(idle_base)
        scan, scan_base = echo_during_a_scan(scanning, typing, echo, ping)
        rounds["scan"].append(scan)
        rounds["scan_base"].append(scan_base)
    for client in tabs:
        client.close()
    echo.close()
    print(json.dumps({"rounds": rounds, "ping": ping}), flush=True)


# ------------------------------------------------------------------ the server (this process)


def report(metric: str, samples: list[float], baseline: list[float], target: float | None) -> None:
    for name, q in (("median", 50), ("p99", 99)):
        figure(
            "echo_latency",
            f"{metric}_{name}",
            percentile(samples, q),
            "ms",
            baseline=percentile(baseline, q),
            target=target if name == "p99" else None,
        )


def main() -> int:
    from blissng.config import Config
    from blissng.redisdb import start_redis
    from blissng.session import Session
    from blissng.shell import ShellHub
    from blissng.web import WebSecurity, create_app, freeze_heap

    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="blissng-echo-") as tmp:
        base = Path(tmp)
        (base / "config").mkdir()
        (base / "config" / "beamline.yml").write_text(CONFIG)
        stack = start_redis(base / "redis", url=None, maxmemory="256mb")
        echo_server = subprocess.Popen(
            [sys.executable, script, "--echo-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert echo_server.stdout is not None and echo_server.stdin is not None
            echo_port = int(echo_server.stdout.readline())
            session = Session(
                "bench",
                config=Config(base / "config"),
                redis=stack.urls,
                scan_saving={"base_path": str(base / "data")},
            )
            app = create_app(
                ShellHub(log_dir=base / "logs"),
                security=WebSecurity(token="bench"),
                sessions=[session],
                data_url=stack.urls.data,
            )
            with ServerThread(app, port=0) as server:
                tabs = subprocess.Popen(
                    [
                        sys.executable,
                        script,
                        "--tabs",
                        f"ws://{server.host}:{server.port}/ws/console/bench?token=bench",
                        f"ws://127.0.0.1:{echo_port}/",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert tabs.stdout is not None and tabs.stdin is not None
                if tabs.stdout.readline().strip() != "ready":
                    raise RuntimeError("the tabs' process failed (its error is above)")
                freeze_heap()  # as run_web_shell does once the server has loaded
                tabs.stdin.write("go\n")
                tabs.stdin.flush()
                result = json.loads(tabs.stdout.readline())
                if tabs.wait(60) != 0:
                    raise RuntimeError("the tabs' process failed (its error is above)")
        finally:
            echo_server.kill()
            echo_server.wait()
            stack.stop()
    rounds, ping = result["rounds"], result["ping"]
    echo = [x for r in rounds["scan"] for x in r]
    idle_echo = [x for r in rounds["idle"] for x in r]
    scan_base = [x for r in rounds["scan_base"] for x in r]
    idle_base = [x for r in rounds["idle_base"] for x in r]
    print(
        f"echo latency with {TABS} tabs ({ROUNDS} rounds): during a scan in another tab "
        f"median {statistics.median(echo):.2f} ms, p99 {percentile(echo, 99):.2f} ms "
        f"(p99 per round: {spread([percentile(r, 99) for r in rounds['scan']])}); idle median "
        f"{statistics.median(idle_echo):.2f} ms, p99 {percentile(idle_echo, 99):.2f} ms (p99 "
        f"per round: {spread([percentile(r, 99) for r in rounds['idle']])}); target p99 <= "
        f"{TARGET_MS} ms; bare websocket echo server: median {statistics.median(scan_base):.2f}"
        f" ms, p99 {percentile(scan_base, 99):.2f} ms during the scan, median "
        f"{statistics.median(idle_base):.2f} ms, p99 {percentile(idle_base, 99):.2f} ms idle; "
        f"the console server's ping/pong during the scan: median {statistics.median(ping):.2f}"
        f" ms, p99 {percentile(ping, 99):.2f} ms"
    )
    report("echo_during_scan", echo, scan_base, TARGET_MS)
    report("echo_idle", idle_echo, idle_base, TARGET_MS)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--echo-server"]:
        serve_echo()
    elif sys.argv[1:2] == ["--tabs"]:
        run_tabs(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
