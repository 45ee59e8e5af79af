"""Continuous scan throughput: an ``fscan`` of 100,000 points at 10 kHz, end to end.

``fscan(m1, 0, 0.0001, 100000, 0.0001, scaler, mca)``: the motor at 1 mm/s, a pulse every
100 µs from the trigger box (the simulator host follows the motion), the scaler (4 counters)
and a 1024-bin MCA acquiring on each pulse, read in batches, published into an embedded
Redis, written by the writer service in its own process (``python -m blissng.writer``), the
live table (a summary line a second) written to a buffer.

Figures, each round alternating with its baseline:

- points/s acquired (every point of every device read, from the box's start), published
  (the scan closed in Redis) and written (the writer's "written" mark), from the first pulse;
- the writer's lag at the end: from the scan closed to written (goal <= 1 s);
- missed pulses, summed over the detectors (goal 0);
- CPU per point of this process (the engine, publishing, display), of the simulator host and
  of the writer;
- Ctrl-C during a line: until the pulses stop (goal <= 100 ms), until the motor is at rest
  (its deceleration included) and until the scan is closed as aborted.

Baseline, same run: a plain loop draining the same buffers (the same motion, the same device
calls: ``read()`` of the scaler and the MCA, ``read_latched()`` of the box, every 5 ms), no
engine, no publishing, no writer.

    python benchmarks/fscan.py [npoints]
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import psutil
from _figures import figure, median, sized, spread

from blissng.acquisition import ChannelSpec
from blissng.comm import register_simulators
from blissng.config import Config
from blissng.data import keys as data_keys
from blissng.devices import AcquisitionParameters, PulseTrain, TriggerMode
from blissng.redisdb import RedisUrls, SettingsStore, async_client, redis_stack
from blissng.scans import ScanContext, ScanSaving, close_shared_clients, fscan, use_context
from blissng.sim import SimHost, open_sim_host, standard_spec

NAME = "fscan"
ROUNDS = sized(3, 1)
ACQ_TIME = 0.0001  # 10 kHz, no dead time
STEP = 0.0001  # mm: 1 mm/s

CONFIG = """
- name: motors
  class: SimSerialMotorController
  url: sim://motors
  axes:
    - name: m1
      channel: 1
      steps_per_unit: 10000
      velocity: 20
      velocity_high_limit: 50
      acceleration: 500
      unit: mm
      encoder: {steps_per_unit: 10000, tolerance: 0.01}
- name: trigger
  class: SimTriggerBox
  url: sim://trigger
  inputs: {m1: 1}
- name: scaler
  class: SimTcpScaler
  url: sim://scaler
  counters:
    - name: timer
    - name: mon
    - name: det
    - name: diode
- name: mca
  class: SimMca
  url: sim://mca
  nbins: 1024
"""


class Arrivals:
    """A channel sink noting when the first and the last batch of the scan arrived."""

    def __init__(self) -> None:
        self.first = 0.0
        self.last = 0.0

    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now

    async def end(self, spec: ChannelSpec, length: int) -> None:
        pass


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def missed(host: SimHost) -> int:
    return sum([(await host.stats(name))["missed"] for name in ("scaler", "mca")])


async def plain_loop(devices: dict[str, Any], host: SimHost, npoints: int) -> dict[str, float]:
    """The same motion and device calls, draining the buffers in a loop: the baseline."""
    m1, box, scaler, mca = (devices[n] for n in ("m1", "trigger", "scaler", "mca"))
    period = ACQ_TIME
    velocity = STEP / period
    run_up = velocity**2 / (2 * m1.acceleration) + STEP
    await m1.move(-run_up)
    for detector in (scaler, mca):
        await detector.prepare(AcquisitionParameters(ACQ_TIME, npoints, TriggerMode.HARDWARE))
        await detector.start()
    train = PulseTrain(npoints, period / 2, period=period, input=1, start=0.0)
    await box.prepare_train(train, [1])
    simulators = psutil.Process(host.pid)
    c0, s0 = time.process_time(), cpu(simulators)
    async with m1.velocity_override(velocity):
        await box.start_pulses()
        started = time.perf_counter()
        await m1.move(STEP * npoints + run_up, wait=False)
        got = dict.fromkeys(("scaler", "mca", "box"), 0)
        while min(got.values()) < npoints:
            batches = {
                "scaler": await scaler.read(),
                "mca": await mca.read(),
                "box": {"latched": await box.read_latched()},
            }
            fresh = 0
            for name, data in batches.items():
                n = len(next(iter(data.values())))
                got[name] += n
                fresh += n
            if not fresh:
                await anyio.sleep(0.005)
        drained = time.perf_counter()
        await m1.wait_move()
    c1, s1 = time.process_time(), cpu(simulators)
    for detector in (scaler, mca):
        await detector.stop()
    return {
        "rate": npoints / (drained - started),
        "cpu_us": (c1 - c0) / npoints * 1e6,
        "sim_cpu_us": (s1 - s0) / npoints * 1e6,
        "missed": await missed(host),
    }


async def one_fscan(
    devices: dict[str, Any], host: SimHost, writer: psutil.Process, context: ScanContext, n: int
) -> dict[str, float]:
    m1, scaler, mca = devices["m1"], devices["scaler"], devices["mca"]
    data = async_client(context.redis.data)  # type: ignore[union-attr]
    try:
        with use_context(context):
            scan = await fscan(m1, 0.0, STEP, n, ACQ_TIME, scaler, mca, run=False)
        arrivals = Arrivals()
        for channel in scan.chain.channels:
            channel.subscribe(arrivals)
        simulators = psutil.Process(host.pid)
        c0, s0, w0 = time.process_time(), cpu(simulators), cpu(writer)
        with use_context(context):
            await scan.run()
        closed = time.perf_counter()
        c1, s1 = time.process_time(), cpu(simulators)
        key = data_keys.ack_key(scan.scan_id)
        while await data.hget(key, "written") != b"1":
            await anyio.sleep(0.005)
        written = time.perf_counter()
        w1 = cpu(writer)
    finally:
        await data.aclose()
    assert scan.state == "done", scan.state
    first = arrivals.first  # the first batch of the first pulses
    return {
        "acquired": n / (arrivals.last - first),
        "published": n / (closed - first),
        "written": n / (written - first),
        "lag": written - closed,
        "cpu_us": (c1 - c0) / n * 1e6,
        "sim_cpu_us": (s1 - s0) / n * 1e6,
        "writer_cpu_us": (w1 - w0) / n * 1e6,
        "missed": await missed(host),
    }


async def ctrl_c(devices: dict[str, Any], host: SimHost, context: ScanContext) -> dict[str, float]:
    """Cancel an fscan one second into its line: until the box stops pulsing, until the motor
    is at rest, until the scan is closed as aborted."""
    m1, scaler = devices["m1"], devices["scaler"]
    with use_context(context):
        scan = await fscan(m1, 0.0, STEP * 10, 50_000, ACQ_TIME * 10, scaler, run=False, save=False)
    stopped: dict[str, float] = {}
    watched = anyio.Event()

    async def watch(cancelled: float) -> None:
        while "pulses" not in stopped or "motor" not in stopped:
            box = await host.stats("trigger")
            motor = (await host.stats("motors"))["axes"]["1"]
            now = time.perf_counter() - cancelled
            if box["status"] == "IDLE":
                stopped.setdefault("pulses", now)
            if motor["state"] == "READY":
                stopped.setdefault("motor", now)
            await anyio.sleep(0.002)
        watched.set()

    async with anyio.create_task_group() as outer:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                with use_context(context):
                    tg.start_soon(scan.run)
                while (await host.stats("trigger"))["count"] < 1000:
                    await anyio.sleep(0.01)
                cancelled = time.perf_counter()
                outer.start_soon(watch, cancelled)
                scope.cancel()
        closed = time.perf_counter() - cancelled
        await watched.wait()
    stopped["closed"] = closed
    assert scan.state == "aborted", (scan.state, scan.error)
    return stopped


def start_writer(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "blissng.writer", "--redis", url, "--log-level", "WARNING"],
        stdin=subprocess.DEVNULL,
    )


async def main(npoints: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="blissng-bench-fscan-"))
    (directory / "config").mkdir()
    (directory / "config" / "fscan.yml").write_text(CONFIG)
    with redis_stack(directory / "redis") as stack:
        urls: RedisUrls = stack.urls
        writer = start_writer(urls.data)
        settings = async_client(urls.settings)
        try:
            async with open_sim_host(standard_spec(directory / "sim")) as host:
                register_simulators(host.urls)
                config = Config(directory / "config")
                devices = {n: config.get(n) for n in ("m1", "trigger", "scaler", "mca")}
                await devices["m1"].connect()
                saving = ScanSaving("bench", settings=SettingsStore(settings))
                await saving.set(base_path=str(directory / "data"), collection="fscan")
                context = ScanContext(
                    session="bench",
                    redis=urls,
                    scan_saving=saving,
                    output=io.StringIO(),
                    motors=lambda: [devices["m1"]],
                    objects=lambda: devices,
                )
                await rounds(devices, host, psutil.Process(writer.pid), context, npoints)
                await stop_figures(devices, host, context)
        finally:
            writer.terminate()
            writer.wait(10)
            await settings.aclose()
            await close_shared_clients()


async def rounds(
    devices: dict[str, Any],
    host: SimHost,
    writer: psutil.Process,
    context: ScanContext,
    npoints: int,
) -> None:
    loops: list[dict[str, float]] = []
    scans: list[dict[str, float]] = []
    await one_fscan(devices, host, writer, context, min(npoints, 2000))  # warm up
    for _ in range(ROUNDS):  # alternated: load from other processes hits both
        loops.append(await plain_loop(devices, host, npoints))
        scans.append(await one_fscan(devices, host, writer, context, npoints))

    def values(rows: list[dict[str, float]], key: str) -> list[float]:
        return [row[key] for row in rows]

    loop_rate = median(values(loops, "rate"))
    for key, what in (
        ("acquired", "read"),
        ("published", "closed in Redis"),
        ("written", "on disk"),
    ):
        rates = values(scans, key)
        figure(
            NAME,
            f"points_per_s_{key}",
            median(rates),
            "points/s",
            baseline=loop_rate,
            target=10_000,
            note=f"{npoints} points at 10 kHz, {what} ({spread(rates, ',.0f')})",
        )
    lags = values(scans, "lag")
    figure(
        NAME, "writer_lag_at_end", median(lags), "s", baseline=0.0, target=1.0, note=spread(lags)
    )
    missed_loop = max(values(loops, "missed"))
    figure(
        NAME,
        "missed_pulses",
        max(values(scans, "missed")),
        "pulses",
        baseline=missed_loop,
        target=0,
    )
    for key, baseline, what in (
        ("cpu_us", "cpu_us", "this process: engine, publishing, display"),
        ("sim_cpu_us", "sim_cpu_us", "the simulator host"),
        ("writer_cpu_us", None, "the writer process"),
    ):
        cpus = values(scans, key)
        figure(
            NAME,
            f"{key.removesuffix('_us')}_per_point",
            median(cpus),
            "us",
            baseline=median(values(loops, baseline)) if baseline else None,
            note=f"{what} ({spread(cpus, '.1f')})",
        )


async def stop_figures(devices: dict[str, Any], host: SimHost, context: ScanContext) -> None:
    stops = []
    for _ in range(sized(3, 1)):
        await host.reset("trigger")  # its pulse count starts from 0
        stops.append(await ctrl_c(devices, host, context))
    pulses = [s["pulses"] * 1e3 for s in stops]
    note = f"worst of {len(stops)} ({spread(pulses, '.0f')}; seen by polling the box)"
    figure(NAME, "ctrl_c_pulses_stopped", max(pulses), "ms", baseline=None, target=100, note=note)
    motor = [s["motor"] * 1e3 for s in stops]
    note = f"deceleration from 1 mm/s at 500 mm/s² included ({spread(motor, '.0f')})"
    figure(NAME, "ctrl_c_motor_at_rest", max(motor), "ms", baseline=None, note=note)
    closed = [s["closed"] * 1e3 for s in stops]
    note = f"aborted and closed in Redis ({spread(closed, '.0f')})"
    figure(NAME, "ctrl_c_scan_closed", max(closed), "ms", baseline=None, note=note)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else sized(100_000, 2_000))
