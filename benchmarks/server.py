"""Server figures: device locks, the API's command round trip, regulation jitter under a scan.

- lock acquire+release per second: in-process only (the baseline: a bare ``anyio.Lock``),
  then with Redis leases (SET NX PX + release script on the embedded settings Redis);
- API command round trip: ``POST /api/sessions/S/commands {"source": "None"}`` through
  ``blissng.client`` on a running server, beside a bare Starlette endpoint served by uvicorn
  in the same process (the HTTP stack alone);
- the heater PID loop's period jitter (how late each 20 ms tick starts: max and p99) while a
  step scan runs in a session, beside the same loop with nothing else running.

Run alone: ``python benchmarks/server.py``. Asserts nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import anyio
import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parent))
from _figures import figure, sized

from blissng.client import Client
from blissng.config import Config
from blissng.locks import Holder, LockManager, holding_as
from blissng.redisdb import redis_stack
from blissng.scans import close_shared_clients
from blissng.session import Server
from blissng.web import WebOptions, serve_web, web_runner

NAME = "server"
CONFIG = """
- name: motors
  class: MockupController
  axes:
    - name: m1
      velocity: 100
      acceleration: 5000
- name: sim
  class: SimCounterController
  sampling_period: 0.001
  counters:
    - name: diode
      motor: $m1
      nsamples: 1
"""
SERVER = """
sessions:
  - name: bench
    workflows: false
    scan_saving: {writer: "null"}
background:
  - name: heater_pid
    period: 0.02
    regulation:
      heater: {ambient: 20, gain: 1.0, tau: 1.0}
      setpoint: 25
      kp: 4
      ki: 1
"""


async def lock_rates(redis_url: str, seconds: float = sized(2.0, 0.1)) -> None:
    plain = anyio.Lock()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        async with plain:
            count += 1
    baseline = count / (time.perf_counter() - start)
    for label, manager in (
        ("local", LockManager(None)),
        ("redis", LockManager(redis_url, lease_time=3.0)),
    ):
        count, start = 0, time.perf_counter()
        with holding_as(Holder("bench", "c1", "bench")):
            while time.perf_counter() - start < seconds:
                async with manager.lock("m1"):
                    count += 1
        rate = count / (time.perf_counter() - start)
        figure(NAME, f"lock_{label}_per_s", rate, "1/s", baseline=baseline, note="(anyio.Lock)")


async def bare_round_trip(n: int) -> float:
    async def ok(request: object) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/ok", ok, methods=["POST"])])
    async with anyio.create_task_group() as tg:
        port = await tg.start(lambda task_status: serve_web(app, port=0, task_status=task_status))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await http.post("/ok", json={})
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                await http.post("/ok", json={"source": "None"})
                times.append(time.perf_counter() - t0)
        tg.cancel_scope.cancel()
    return sorted(times)[len(times) // 2]


async def server_figures(directory: Path, urls: object) -> None:
    config_dir = directory / "config"
    config_dir.mkdir()
    (config_dir / "beamline.yml").write_text(textwrap.dedent(CONFIG))
    (config_dir / "server.yml").write_text(textwrap.dedent(SERVER))
    config = Config(config_dir)
    async with Server(
        config,
        urls,  # type: ignore[arg-type]
        state_dir=directory / "state",
        writer=False,
        web=web_runner(WebOptions(port=0)),
    ) as server:
        n = sized(200, 5)
        async with Client.from_connection_file(directory / "state" / "web.json") as client:
            await client.run("bench", "None")
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                await client.run("bench", "None")
                times.append(time.perf_counter() - t0)
        api = sorted(times)[n // 2]
        bare = await bare_round_trip(n)
        figure(NAME, "api_command_round_trip", api * 1e3, "ms", baseline=bare * 1e3,
               note="(bare Starlette POST)")  # fmt: skip

        task = server.background.tasks["heater_pid"]
        session = server.session("bench")
        await anyio.sleep(0.5)
        task.jitter.window.clear()
        await anyio.sleep(sized(3.0, 0.2))
        idle = task.jitter.summary()
        task.jitter.window.clear()
        await session.execute(f"ascan(m1, 0, 1, {sized(200, 10)}, 0.01, sim)")
        busy = task.jitter.summary()
        figure(NAME, "regulation_jitter_max", busy["max"] * 1e3, "ms",
               baseline=idle["max"] * 1e3, target="< 20 ms (the period)",
               note="(scan running; baseline idle)")  # fmt: skip
        figure(NAME, "regulation_jitter_p99", busy["p99"] * 1e3, "ms",
               baseline=idle["p99"] * 1e3, note="(scan running; baseline idle)")  # fmt: skip
    await close_shared_clients()


def main() -> None:
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores (jitter follows the machine's load)")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with redis_stack(directory / "redis") as stack:
            anyio.run(lock_rates, stack.urls.settings)
            anyio.run(server_figures, directory, stack.urls)


if __name__ == "__main__":
    main()
