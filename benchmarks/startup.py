"""Start-up figures: ``blissng demo`` time to ready, embedded Redis start, a Redis round trip.

- ``demo_ready``: ``blissng demo`` run headless (stdin not a terminal) until its "ready" log
  line (Redis, the simulators, the configuration loaded and connected), median of several
  runs; baseline: the bare Python interpreter starting and exiting (the floor of any
  command). Target: 3 s. ``demo_ready_cpu``: the CPU seconds the process tree used until then
  (less sensitive to other load on the machine).
- ``redis_start``: :func:`blissng.redisdb.start_redis` (both servers, version check, PING);
  baseline: one bare ``redis-server`` started by hand until it answers PING.
- ``roundtrip_*``: PING, SET and GET through blissng's async client (redis.asyncio, hiredis)
  on the embedded data server, per operation; baseline: redis-py's plain synchronous client
  on the same server.

    python benchmarks/startup.py [runs]
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import psutil
import redis
from _figures import figure, median, sized, spread

from blissng.redisdb import async_client, find_redis_server, start_redis

BENCHMARK = "startup"
BLISSNG = Path(sys.executable).parent / "blissng"
COMMAND = [str(BLISSNG)] if BLISSNG.exists() else [sys.executable, "-m", "blissng"]
ROUNDTRIPS = sized(2000, 50)


def show(metric: str, value: float, unit: str, baseline: float, target: float | None,
         values: list[float] | None = None) -> None:  # fmt: skip
    note = spread(values) if values else ""
    figure(BENCHMARK, metric, value, unit, baseline=baseline, target=target, note=note)


def time_to_ready(state_dir: Path) -> tuple[float, float, float]:
    """Seconds from spawning ``blissng demo`` to its "ready" line, and the CPU seconds its
    process tree (blissng, Redis, simulators) used until then; then SIGTERM."""
    env = {k: v for k, v in os.environ.items() if k != "BLISSNG_REDIS_URL"}
    env["XDG_STATE_HOME"] = str(state_dir / "xdg")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*COMMAND, "demo", "--state-dir", str(state_dir / "demo")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""
    deadline = started + 60
    try:
        while b" ready " not in buffer:
            if not selector.select(max(0.0, deadline - time.perf_counter())):
                raise RuntimeError(f"blissng demo not ready within 60 s: {buffer.decode()}")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"blissng demo exited ({proc.wait()}): {buffer.decode()}")
            buffer += chunk
        elapsed = time.perf_counter() - started
        cpu, own = tree_cpu(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        selector.close()
        proc.stdout.close()
    return elapsed, cpu, own


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the process tree, and of its root (blissng itself) alone."""
    total = own = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
            if proc is root:
                own = times.user + times.system
    return total, own


def python_floor() -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def redis_start(state_dir: Path) -> float:
    started = time.perf_counter()
    stack = start_redis(state_dir, url=None)
    elapsed = time.perf_counter() - started
    stack.stop()
    return elapsed


def bare_redis_start(directory: Path) -> float:
    directory.mkdir(parents=True, exist_ok=True)
    socket = directory / "bare.sock"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(find_redis_server()), "--port", "0", "--unixsocket", str(socket),
         "--dir", str(directory), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(unix_socket_path=str(socket))
    try:
        while True:
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, OSError):
                time.sleep(0.002)  # polling a child's start-up, as start_redis does
        return time.perf_counter() - started
    finally:
        client.close()
        proc.terminate()
        proc.wait()


def per_op_sync(client: redis.Redis, op: Callable[[], object]) -> float:
    for _ in range(100):
        op()
    started = time.perf_counter()
    for _ in range(ROUNDTRIPS):
        op()
    return (time.perf_counter() - started) / ROUNDTRIPS * 1e6


async def async_figures(url: str) -> dict[str, float]:
    results: dict[str, float] = {}
    async with async_client(url) as client:
        value = b"x" * 100
        ops = {
            "ping": client.ping,
            "set": lambda: client.set("bench:key", value),
            "get": lambda: client.get("bench:key"),
        }
        for name, op in ops.items():
            for _ in range(100):
                await op()
            started = time.perf_counter()
            for _ in range(ROUNDTRIPS):
                await op()
            results[name] = (time.perf_counter() - started) / ROUNDTRIPS * 1e6
        await client.delete("bench:key")
    return results


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else sized(3, 1)
    with tempfile.TemporaryDirectory(prefix="blissng-bench-") as tmp:
        base = Path(tmp)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"blissng start-up ({runs} runs each, median; load average {load} on "
            f"{os.cpu_count()} CPUs: wall times grow with the load, CPU times much less)"
        )
        demo, floor = [], []
        for i in range(runs):  # alternated, so that load from other processes hits both
            demo.append(time_to_ready(base / f"demo{i}"))
            floor.append(python_floor())
        walls, cpus, owns = ([d[i] for d in demo] for i in (0, 1, 2))
        floor_wall, floor_cpu = (median([f[i] for f in floor]) for i in (0, 1))
        show("demo_ready", median(walls), "s", floor_wall, 3.0, walls)
        show("demo_ready_cpu", median(cpus), "s", floor_cpu, None, cpus)
        show("demo_ready_cpu_blissng", median(owns), "s", floor_cpu, None, owns)

        starts, bares = [], []
        for i in range(runs):
            starts.append(redis_start(base / f"redis{i}"))
            bares.append(bare_redis_start(base / f"bare{i}"))
        show("redis_start", median(starts), "s", median(bares), None, starts)

        stack = start_redis(base / "roundtrip", url=None)
        try:
            ours = anyio.run(async_figures, stack.urls.data)
            raw = redis.Redis.from_url(stack.urls.data)
            value = b"x" * 100
            try:
                baseline = {
                    "ping": per_op_sync(raw, raw.ping),
                    "set": per_op_sync(raw, lambda: raw.set("bench:key", value)),
                    "get": per_op_sync(raw, lambda: raw.get("bench:key")),
                }
            finally:
                raw.close()
        finally:
            stack.stop()
        for name in ("ping", "set", "get"):
            show(f"roundtrip_{name}", ours[name], "us", baseline[name], None)


if __name__ == "__main__":
    main()
