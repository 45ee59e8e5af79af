"""Keystroke echo latency of the web shell: 10 tabs connected, one running a scan.

A key typed in a browser tab travels as a websocket message to the server, into that console's
prompt_toolkit application, which redraws its line; the redraw comes back as terminal output.
This measures that round trip (median, 99th percentile) over a real TCP websocket while another
tab of the same session runs a ``loopscan`` on simulated counters (publishing to an embedded
Redis), with 10 consoles connected. Baseline in the same run: a ping/pong round trip on the
same websocket (the app and the transport without prompt_toolkit).

Run: ``python benchmarks/echo_latency.py``. Target: p99 <= 20 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")

from _figures import figure

from blissng.config import Config
from blissng.redisdb import start_redis
from blissng.session import Session
from blissng.shell.consoles import ShellHub
from blissng.web.app import create_app
from blissng.web.security import WebSecurity
from blissng.web.serve import freeze_heap
from blissng.web.testing import ConsoleClient, ServerThread

TABS = 10
KEYS = 400
TARGET_MS = 20.0
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


def drain(client: ConsoleClient, stop: threading.Event) -> None:
    """Keep reading a tab's output (the scanning tab prints its table)."""
    while not stop.is_set():
        try:
            client.receive(0.2)
        except Exception:
            return


def measure_echo(client: ConsoleClient, keys: int) -> list[float]:
    samples = []
    for i in range(keys):
        key = "a" if i % 2 == 0 else "\x7f"  # type, erase: the line stays short
        client.send("stdin", key)
        start = time.perf_counter()
        while True:
            message = client.receive(5.0)
            if message is None:
                raise RuntimeError("no echo within 5 s")
            if message[0] == "stdout":
                break
        samples.append((time.perf_counter() - start) * 1000)
        # let the rest of this redraw arrive before the next key
        while client.receive(0.002) is not None:
            pass
    return samples


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
    with tempfile.TemporaryDirectory(prefix="blissng-echo-") as tmp:
        base = Path(tmp)
        (base / "config").mkdir()
        (base / "config" / "beamline.yml").write_text(CONFIG)
        stack = start_redis(base / "redis", url=None, maxmemory="256mb")
        try:
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
                tabs = [ConsoleClient.open(server, "bench", token="bench") for _ in range(TABS)]
                freeze_heap()  # as run_web_shell does once the server has loaded
                scanning, typing = tabs[0], tabs[1]
                stop = threading.Event()
                drainer = threading.Thread(target=drain, args=(scanning, stop), daemon=True)
                typing.expect(r"bench \[1\]: ")
                measure_echo(typing, 60)  # warm-up: first renders fill prompt_toolkit's caches
                # idle first (same run): the console alone
                idle_echo = measure_echo(typing, KEYS // 2)
                scanning.type("loopscan(100000, 0.01, sim)\r")
                scanning.wait_status(busy=True, timeout=30)
                scanning.expect(r"\n\s*10\s", timeout=30)
                drainer.start()
                ping = measure_ping(typing, KEYS)
                echo = measure_echo(typing, KEYS)
                still_running = scanning.status.get("busy")
                scanning.type("\x03")
                stop.set()
                drainer.join(5)
                for tab in tabs:
                    tab.close()
        finally:
            stack.stop()
    print(
        f"echo latency with {TABS} tabs, one scanning (running={still_running}): "
        f"median {statistics.median(echo):.2f} ms, p99 {percentile(echo, 99):.2f} ms "
        f"(target p99 <= {TARGET_MS} ms); idle console median "
        f"{statistics.median(idle_echo):.2f} ms; websocket ping/pong baseline median "
        f"{statistics.median(ping):.2f} ms, p99 {percentile(ping, 99):.2f} ms"
    )
    report("echo_during_scan", echo, ping, TARGET_MS)
    report("echo_idle", idle_echo, ping, TARGET_MS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
