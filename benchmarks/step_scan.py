"""Step-scan throughput of ``ascan``, end to end, against the same device calls in a plain loop.

Figure 1 (the issue's): ``ascan`` of a zero-motion-time simulated motor (``MockupController``
with ``instant: true``) and 8 simulated counters on one controller (``SimCounterController``),
count_time 0, 10,000 points, data published into a real (embedded) Redis by the data layer's
publisher, timed until the scan is closed (streams sealed). Target >= 10,000 points/s.

Baseline, same run: the same device calls (``move``, ``trigger``, ``read``) in a plain ``for``
loop, no engine, no publishing. Engine overhead per point = (scan time - loop time) / points.
Target <= 80 µs.

Figure 2: the same ``ascan`` over the real transports: the serial motor controller on a pty
and the TCP scaler served by a simulator process (fewer points: every point is several round
trips through real sockets). Its baseline is the plain loop over the same transports.

    python benchmarks/step_scan.py [npoints]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _figures import figure, median, sized, spread

from blissng.devices import AcquisitionParameters
from blissng.redisdb import redis_stack
from blissng.scans import ScanContext, ascan, close_shared_clients, use_context
from blissng.sim import MockupController, SimCounterController

NAME = "step_scan"
ROUNDS = sized(5, 1)  # alternated loop/scan rounds; figures are medians, their range is printed


def emit(
    metric: str, value: float, unit: str, baseline: float, target: float, text: str, note: str = ""
) -> None:
    print(text)
    figure(NAME, metric, value, unit, baseline=baseline, target=target, note=note)


def devices() -> tuple[Any, Any]:
    ctrl = MockupController(
        "bench_ctrl",
        MockupController.Parameters.model_validate({"instant": True, "axes": [{"name": "m1"}]}),
    )
    m1 = ctrl.child("m1")
    sim = SimCounterController(
        "bench_sim",
        SimCounterController.Parameters.model_validate(
            {
                "sampling_period": 0.001,
                "counters": [
                    {"name": f"c{i}", "motor": m1, "center": 5.0, "nsamples": 1} for i in range(8)
                ],
            }
        ),
    )
    return m1, sim


async def plain_loop(m1: Any, sim: Any, npoints: int, count_time: float = 0.0) -> float:
    """The device calls of the scan, without the engine: the baseline."""
    await sim.prepare(AcquisitionParameters(count_time=count_time, npoints=npoints))
    await sim.start()
    step = 10.0 / (npoints - 1)
    t0 = time.perf_counter()
    for i in range(npoints):
        await m1.move(i * step)
        await sim.trigger()
        data = await sim.read()
        while not data or len(next(iter(data.values()))) == 0:
            data = await sim.read()
        if i % 64 == 0:
            await anyio.lowlevel.checkpoint()
    elapsed = time.perf_counter() - t0
    await sim.stop()
    return elapsed


async def scan_once(
    m1: Any, sim: Any, npoints: int, context: ScanContext, count_time: float = 0.0
) -> float:
    with use_context(context):
        t0 = time.perf_counter()
        scan = await ascan(m1, 0, 10, npoints - 1, count_time, sim, save=False)
        elapsed = time.perf_counter() - t0
    assert scan.state == "done", scan.state
    return elapsed


async def in_process(npoints: int, redis_url: Any) -> None:
    m1, sim = devices()
    context = ScanContext(session="bench", redis=redis_url, output=None, motors=lambda: [m1])
    # Warm up (imports, Redis connection, first-call paths).
    await scan_once(m1, sim, 100, context)
    await plain_loop(m1, sim, 100)
    loop_times: list[float] = []
    scan_times: list[float] = []
    local_times: list[float] = []
    # Without publishing: the engine and the scans layer alone.
    local = ScanContext(session="bench", redis=None, output=None, motors=lambda: [m1])
    cpu_overheads: list[float] = []  # this process's CPU only: robust to other load
    for _ in range(ROUNDS):  # alternated, so that load from other processes hits all three
        c0 = time.process_time()
        loop_times.append(await plain_loop(m1, sim, npoints))
        c1 = time.process_time()
        scan_times.append(await scan_once(m1, sim, npoints, context))
        c2 = time.process_time()
        cpu_overheads.append(((c2 - c1) - (c1 - c0)) / npoints * 1e6)
        local_times.append(await scan_once(m1, sim, npoints, local))
    rates = [npoints / t for t in scan_times]
    # per round: the scan minus the plain loop run just before it
    overheads = [(s - t) / npoints * 1e6 for t, s in zip(loop_times, scan_times, strict=True)]
    loop_t = median(loop_times)
    rate, loop_rate, overhead_us = median(rates), npoints / loop_t, median(overheads)
    emit(
        "points_per_second",
        rate,
        "points/s",
        loop_rate,
        10_000,
        f"ascan {npoints} points, 8 counters, published to Redis: {rate:,.0f} points/s "
        f"(plain loop of the same device calls: {loop_rate:,.0f} points/s)",
        spread(rates, ",.0f"),
    )
    emit(
        "engine_overhead_per_point",
        overhead_us,
        "us",
        loop_t / npoints * 1e6,
        80,
        f"engine + publishing overhead: {overhead_us:.1f} µs per point "
        f"(device calls alone: {loop_t / npoints * 1e6:.1f} µs per point)",
        spread(overheads, ".1f"),
    )
    emit(
        "engine_overhead_cpu_per_point",
        median(cpu_overheads),
        "us",
        0.0,
        80,
        f"engine + publishing CPU in this process: {median(cpu_overheads):.1f} µs per point "
        "(whole ascan call, setup included, minus the plain loop's CPU)",
        spread(cpu_overheads, ".1f"),
    )
    local_rates = [npoints / t for t in local_times]
    emit(
        "points_per_second_unpublished",
        median(local_rates),
        "points/s",
        loop_rate,
        10_000,
        f"same ascan kept in memory (no Redis): {median(local_rates):,.0f} points/s",
        spread(local_rates, ",.0f"),
    )


async def abort_latency(redis_url: Any) -> None:
    """Ctrl-C during a software-timed scan (count time 0.5 s): time until the scan is closed
    as aborted (devices stopped, streams sealed). Target <= 100 ms."""
    m1, sim = devices()
    context = ScanContext(session="bench", redis=redis_url, output=None, motors=lambda: [m1])
    times = []
    with use_context(context):
        for _ in range(sized(5, 1)):
            scan = await ascan(m1, 0, 10, 100, 0.5, sim, run=False, save=False)
            first = anyio.Event()
            scan.control.add_point_callback(lambda i, _, ev=first: ev.set())
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(scan.run)
                    await first.wait()
                    await anyio.sleep(0.1)  # in the middle of the next count
                    t0 = time.perf_counter()
                    scope.cancel()
            times.append(time.perf_counter() - t0)
            assert scan.state == "aborted"
    worst = max(times) * 1e3
    emit(
        "abort_latency_ms",
        worst,
        "ms",
        min(times) * 1e3,
        100,
        f"Ctrl-C to aborted and closed (software-timed, count time 0.5 s): worst of 5 "
        f"{worst:.1f} ms (best {min(times) * 1e3:.1f} ms)",
    )


TRANSPORT_CONFIG = """
- name: motors
  class: SimSerialMotorController
  url: sim://motors
  axes:
    - name: m1
      channel: 1
      steps_per_unit: 1000
      velocity: 1000
      acceleration: 100000
- name: scaler
  class: SimTcpScaler
  url: sim://scaler
  counters:
    - name: det
    - name: mon
"""


async def over_transports(npoints: int, redis_url: Any, directory: Path) -> None:
    """The serial motor controller on a pty and the TCP scaler (the simulator processes)."""
    from blissng.comm import register_simulators
    from blissng.config import Config
    from blissng.sim import open_sim_host, standard_spec

    (directory / "config").mkdir()
    (directory / "config" / "transports.yml").write_text(TRANSPORT_CONFIG)
    async with open_sim_host(standard_spec(directory / "sim")) as host:
        register_simulators(host.urls)
        config = Config(directory / "config")
        motor, scaler = config.get("m1"), config.get("scaler")
        await motor.connect()
        context = ScanContext(session="bench", redis=redis_url, output=None, motors=lambda: [motor])
        count_time = 0.001  # the scaler refuses 0
        await scan_once(motor, scaler, 10, context, count_time)
        loop_t = await plain_loop(motor, scaler, npoints, count_time)
        scan_t = await scan_once(motor, scaler, npoints, context, count_time)
        emit(
            "points_per_second_real_transports",
            npoints / scan_t,
            "points/s",
            npoints / loop_t,
            0,
            f"ascan {npoints} points (count time 1 ms) over pty motor + TCP scaler: "
            f"{npoints / scan_t:,.0f} points/s (plain loop over the same transports: "
            f"{npoints / loop_t:,.0f} points/s; "
            f"{(scan_t - loop_t) / npoints * 1e6:.0f} µs engine overhead per point)",
        )


async def main(npoints: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="blissng-bench-"))
    with redis_stack(directory / "redis") as stack:
        try:
            await in_process(npoints, stack.urls)
            await abort_latency(stack.urls)
            await over_transports(max(50, npoints // 50), stack.urls, directory)
        finally:
            await close_shared_clients()


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else sized(10_000, 100))
