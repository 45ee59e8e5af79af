"""Control systems: what blissng's Tango and EPICS layers cost beside the raw clients.

Against the simulated servers (blissng.sim.TangoSimServer, blissng.sim.EpicsSimIoc: real pytango
and caproto/p4p servers in processes of their own, on 127.0.0.1), in one run:

1. read round trips per second, blissng vs the raw client of the same run, alternated over
   ROUNDS rounds: ``TangoDevice.read`` vs pytango's asyncio ``read_attribute``;
   ``CaPV.get`` vs ``aioca.caget``; ``PvaPV.get`` vs p4p's asyncio ``Context.get``
   (goal: blissng >= 80 % of raw);
2. event / monitor to callback latency (median and p99, ms): the server's timestamp of a value
   to the callback on the client's event loop, through blissng and through the raw client
   (Tango change events of a moving motor's Position; CA monitor of a moving motor record's
   RBV; PVA monitor of a value posted every 20 ms while a motor record moves);
3. ``ascan`` of a Tango motor with a Tango counter, and of an EPICS motor with an EPICS
   counter (fast motors: the motion itself takes ~1 ms), published to an embedded Redis, in
   points/s, beside a plain loop of the same device calls (move, trigger, read).

    python benchmarks/control_systems.py [--seconds 1] [--points 200]

Prints a human-readable line and one JSON line per figure. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from _figures import figure, median, sized, spread

NAME = "control_systems"
ROUNDS = sized(3, 1)  # alternated rounds; figures are medians, their range is printed


def emit(metric: str, value: float, unit: str, baseline: float | None, target: Any, text: str,
         note: str = "") -> None:  # fmt: skip
    print(text)
    figure(NAME, metric, value, unit, baseline=baseline, target=target, note=note)


async def rate(call: Callable[[], Awaitable[Any]], seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        await call()
        n += 1
    return n / (time.perf_counter() - start)


async def compare_reads(
    what: str, ours: Callable[[], Awaitable[Any]], raw: Callable[[], Awaitable[Any]], seconds: float
) -> None:
    await ours()
    await raw()
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(ROUNDS):  # alternated: load from other processes hits both
        theirs.append(await rate(raw, seconds))
        mine.append(await rate(ours, seconds))
    ratios = [m / r for m, r in zip(mine, theirs, strict=True)]
    emit(
        f"{what}_reads_per_second",
        median(mine),
        "reads/s",
        median(theirs),
        ">= 80 % of raw",
        f"{what} reads through blissng: {median(mine):,.0f}/s, raw client {median(theirs):,.0f}/s "
        f"({median(ratios):.0%} of raw)",
        f"blissng {spread(mine, ',.0f')}; raw {spread(theirs, ',.0f')}",
    )


def latency_stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


def emit_latency(what: str, ours: list[float], raw: list[float]) -> None:
    (m_med, m_p99), (r_med, r_p99) = latency_stats(ours), latency_stats(raw)
    emit(
        f"{what}_event_latency_median",
        m_med,
        "ms",
        r_med,
        None,
        f"{what} server timestamp -> callback through blissng: median {m_med:.2f} ms, p99 "
        f"{m_p99:.2f} ms ({len(ours)} events); raw client: median {r_med:.2f} ms, p99 "
        f"{r_p99:.2f} ms ({len(raw)} events)",
    )
    figure(NAME, f"{what}_event_latency_p99", m_p99, "ms", baseline=r_p99)


# ------------------------------------------------------------------------------ Tango


async def tango_figures(server: Any, seconds: float) -> None:
    import tango
    from tango.asyncio_executor import AsyncioExecutor

    from blissng.tango import TangoDevice

    trl = server.trl("sim/counter/1")
    ours = TangoDevice("bench", trl)
    executor = AsyncioExecutor(loop=asyncio.get_running_loop())
    raw = await executor.delegate(
        tango.DeviceProxy, trl, green_mode=tango.GreenMode.Asyncio, asyncio_executor=executor
    )
    await compare_reads(
        "tango", lambda: ours.read("Counts"), lambda: raw.read_attribute("Counts"), seconds
    )
    await ours.close()

    # events: a moving motor pushes Position every 20 ms
    motor_trl = server.trl("sim/motor/2")
    motor = TangoDevice("bench_motor", motor_trl)
    mine: list[float] = []
    theirs: list[float] = []
    sub = await motor.subscribe(
        "Position", lambda v, t: mine.append(time.time() - t), lambda e: None, timestamps=True
    )
    raw_motor = await executor.delegate(
        tango.DeviceProxy, motor_trl, green_mode=tango.GreenMode.Asyncio, asyncio_executor=executor
    )

    def on_raw(event: Any) -> None:  # the plain pytango way: a callback in Tango's thread
        if not event.err:
            stamp = event.attr_value.time.totime()
            loop.call_soon_threadsafe(lambda: theirs.append(time.time() - stamp))

    loop = asyncio.get_running_loop()
    raw_id = await executor.delegate(
        raw_motor.subscribe_event, "Position", tango.EventType.CHANGE_EVENT, on_raw,
        green_mode=tango.GreenMode.Synchronous,
    )  # fmt: skip
    await anyio.sleep(0.2)
    mine.clear()
    theirs.clear()
    for target in sized((20.0, 0.0, 20.0), (1.0,)):  # 4 s each way at 5 mm/s
        await motor.write("Position", target)
        while str(await motor.state()) == "MOVING":
            await anyio.sleep(0.1)
    assert sub is not None
    await motor.unsubscribe(sub)
    await executor.delegate(
        raw_motor.unsubscribe_event, raw_id, green_mode=tango.GreenMode.Synchronous
    )
    await motor.close()
    emit_latency("tango", mine, theirs)


# ------------------------------------------------------------------------------ EPICS


async def epics_figures(seconds: float) -> None:
    import aioca
    from p4p.client.asyncio import Context

    from blissng.epics import CaPV, PvaPV

    ours_ca = CaPV("bench", "SIM:sc:S3")
    await compare_reads("ca", ours_ca.get, lambda: aioca.caget("SIM:sc:S3", timeout=3), seconds)
    ours_pva = PvaPV("bench", "SIM:pva:det")
    context = Context("pva")
    await compare_reads("pva", ours_pva.get, lambda: context.get("SIM:pva:det"), seconds)

    # CA monitors of a moving motor record's RBV
    mine: list[float] = []
    theirs: list[float] = []
    rbv = CaPV("bench_rbv", "SIM:m2.RBV")
    rbv.monitor(lambda v: mine.append(time.time() - v.timestamp), lambda e: None)
    raw_sub = aioca.camonitor(
        "SIM:m2.RBV", lambda v: theirs.append(time.time() - v.timestamp), format=aioca.FORMAT_TIME
    )
    await anyio.sleep(0.3)
    mine.clear()
    theirs.clear()
    for target in sized((20.0, 0.0, 20.0), (1.0,)):
        await aioca.caput("SIM:m2", target)
        await anyio.sleep(0.2)
        while not await aioca.caget("SIM:m2.DMOV"):
            await anyio.sleep(0.1)
    raw_sub.close()
    await rbv.close()
    emit_latency("ca", mine, theirs)

    # PVA monitors of a value posted every 20 ms while SIM:m1 moves
    mine, theirs = [], []
    await aioca.caput("SIM:m1.VELO", 1.0)
    await aioca.caput("SIM:m1", sized(6.0, 0.5))
    det = PvaPV("bench_det", "SIM:pva:det")
    det.monitor(lambda v: mine.append(time.time() - v.timestamp), lambda e: None)

    async def on_raw(value: Any) -> None:  # p4p's asyncio monitor takes a coroutine
        theirs.append(time.time() - value.timestamp)

    raw_pva = context.monitor("SIM:pva:det", on_raw)
    await anyio.sleep(sized(5, 0.4))
    raw_pva.close()
    await aioca.caput("SIM:m1.STOP", 1)
    await aioca.caput("SIM:m1.VELO", 2.0)
    await det.close()
    emit_latency("pva", mine[1:], theirs[1:])  # the first is the value at subscription
    context.close()
    await ours_pva.close()
    await ours_ca.close()


# ------------------------------------------------------------------------------ ascan


SCAN_CONFIG = """
- name: tmot
  class: TangoMotor
  tango_name: sim/motor/1
  tango_host: sim://tango
  velocity: 1000
  acceleration: 100000
- name: tcount
  class: TangoCounterController
  tango_name: sim/counter/1
  tango_host: sim://tango
  counters: [{name: tcounts, attribute: Counts}]
- name: emot
  class: EpicsMotor
  pv: "SIM:m1"
  velocity: 1000
  acceleration: 100000
- name: ecount
  class: EpicsCounterController
  counters: [{name: edet, pv: "SIM:sc:S3"}]
"""


async def plain_loop(motor: Any, counter: Any, npoints: int) -> float:
    from blissng.devices import AcquisitionParameters

    await counter.prepare(AcquisitionParameters(count_time=0.0, npoints=npoints))
    await counter.start()
    step = 1.0 / (npoints - 1)
    t0 = time.perf_counter()
    for i in range(npoints):
        await motor.move(i * step)
        await counter.trigger()
        await counter.read()
    elapsed = time.perf_counter() - t0
    await counter.stop()
    return elapsed


async def scan_figures(directory: Path, npoints: int, redis_url: Any) -> None:
    from blissng.config import Config
    from blissng.scans import ScanContext, ascan, use_context

    (directory / "config").mkdir()
    (directory / "config" / "bench.yml").write_text(SCAN_CONFIG)
    config = Config(directory / "config")
    for system, motor_name, counter_name in (
        ("tango", "tmot", "tcount"),
        ("epics", "emot", "ecount"),
    ):
        motor, counter = config.get(motor_name), config.get(counter_name)
        await motor.connect()
        await counter.connect()
        context = ScanContext(session="bench", redis=redis_url, output=None, motors=lambda: [])
        scans: list[float] = []
        loops: list[float] = []
        with use_context(context):
            await ascan(motor, 0, 1, 10, 0, counter, save=False)  # warm up
            for _ in range(ROUNDS):
                loops.append(npoints / await plain_loop(motor, counter, npoints))
                t0 = time.perf_counter()
                scan = await ascan(motor, 0, 1, npoints - 1, 0, counter, save=False)
                scans.append(npoints / (time.perf_counter() - t0))
                assert scan.state == "done", scan.state
        emit(
            f"{system}_ascan_points_per_second",
            median(scans),
            "points/s",
            median(loops),
            None,
            f"ascan of a {system} motor and counter, {npoints} points: {median(scans):,.0f} "
            f"points/s (plain loop of the same calls: {median(loops):,.0f} points/s)",
            f"ascan {spread(scans, ',.0f')}; loop {spread(loops, ',.0f')}",
        )
    for obj in config.built().values():
        await obj.close()


async def main(seconds: float, npoints: int) -> None:
    from blissng.comm import register_simulators
    from blissng.redisdb import redis_stack
    from blissng.scans import close_shared_clients
    from blissng.sim import open_tango_sim, shared_ioc

    directory = Path(tempfile.mkdtemp(prefix="bench-cs-"))
    with shared_ioc(directory / "epics"), redis_stack(directory / "redis") as stack:
        async with open_tango_sim(directory / "tango") as server:
            register_simulators({"tango": server.tango_host})
            await tango_figures(server, seconds)
            await epics_figures(seconds)
            await scan_figures(directory, npoints, stack.urls)
            await close_shared_clients()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=sized(1.0, 0.1), help="per round")
    parser.add_argument("--points", type=int, default=sized(200, 5), help="ascan points")
    options = parser.parse_args()
    anyio.run(main, options.seconds, options.points)
