"""Engine overhead of the acquisition chain per point, against a plain loop.

A zero-time motor and counter controllers of 8 counters that do nothing (trivial in-process
acquirables): what is left is the engine's own cost. The same device calls (move, trigger,
read, wait_ready) made in a plain ``for`` loop are the baseline, measured in the same run.

Figures: points/s of the chain (target >= 10,000) and engine overhead per point in µs
(target <= 80), for one controller (the step-scan benchmark's shape) and for three
controllers under one timer (the fan-out path).

    python benchmarks/chain_overhead.py [npoints]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

import anyio
import numpy as np
from _figures import figure, median, sized, spread

from blissng.acquisition import (
    AcquirableSlave,
    AcquisitionChain,
    ChannelSpec,
    MotorStepMaster,
    SoftwareTimerMaster,
)
from blissng.devices import AcquisitionParameters

NAME = "chain_overhead"


class Counter:
    unit: str | None = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = "float64"
        self.shape: tuple[int, ...] = ()


class NullController:
    """Eight counters read together; every call returns at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._counters = [Counter(f"c{i}") for i in range(8)]
        self._point = {c.name: np.zeros(1) for c in self._counters}

    @property
    def counters(self) -> list[Counter]:
        return self._counters

    async def prepare(self, params: AcquisitionParameters) -> None:
        pass

    async def start(self) -> None:
        pass

    async def trigger(self) -> None:
        pass

    async def read(self) -> Mapping[str, np.ndarray]:
        return self._point

    async def wait_ready(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class NullMotor:
    def __init__(self, name: str) -> None:
        self.name = name
        self.position = 0.0

    async def read_position(self) -> float:
        return self.position

    async def move(self, target: float, wait: bool = True) -> None:
        self.position = target

    async def wait_move(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class CountingSink:
    """What a publisher does at least: take the batch (it buffers and flushes elsewhere)."""

    def __init__(self) -> None:
        self.points = 0

    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None:
        self.points += len(batch)

    async def end(self, spec: ChannelSpec, length: int) -> None:
        pass


async def plain_loop(npoints: int, ncontrollers: int) -> tuple[float, float]:
    motor = NullMotor("m1")
    controllers = [NullController(f"ctrl{i}") for i in range(ncontrollers)]
    positions = np.linspace(0, 1, npoints).tolist()
    t0, c0 = time.perf_counter(), time.process_time()
    for position in positions:
        await motor.move(position)
        for ctrl in controllers:
            await ctrl.trigger()
        for ctrl in controllers:
            await ctrl.read()
        for ctrl in controllers:
            await ctrl.wait_ready()
    return time.perf_counter() - t0, time.process_time() - c0


async def chain_run(npoints: int, ncontrollers: int) -> tuple[float, float]:
    motor = NullMotor("m1")
    chain = AcquisitionChain()
    master = MotorStepMaster([(motor, np.linspace(0, 1, npoints))])
    timer = SoftwareTimerMaster(0.0, npoints)
    chain.add(master, timer)
    for i in range(ncontrollers):
        chain.add(timer, AcquirableSlave(NullController(f"ctrl{i}")))
    sink = CountingSink()
    for channel in chain.channels:
        channel.subscribe(sink)
    t0, c0 = time.perf_counter(), time.process_time()
    await chain.run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert sink.points == npoints * len(chain.channels)
    return elapsed, cpu


ROUNDS = sized(5, 1)  # alternated plain/engine rounds; figures are medians, the range is printed


async def main(npoints: int) -> None:
    for ncontrollers in (1, 3):
        await plain_loop(sized(1000, 10), ncontrollers)  # warm up
        await chain_run(sized(1000, 10), ncontrollers)
        plains, engines = [], []
        for _ in range(ROUNDS):  # alternated, so that load from other processes hits both
            plains.append(await plain_loop(npoints, ncontrollers))
            engines.append(await chain_run(npoints, ncontrollers))
        rates = [npoints / e[0] for e in engines]
        plain_rate = median([npoints / p[0] for p in plains])
        # per round: engine minus the plain loop run just before it
        overheads = [(e[0] - p[0]) / npoints * 1e6 for p, e in zip(plains, engines, strict=True)]
        cpus = [(e[1] - p[1]) / npoints * 1e6 for p, e in zip(plains, engines, strict=True)]
        rate, overhead_us, cpu_us = median(rates), median(overheads), median(cpus)
        label = f"{ncontrollers} controller{'s' if ncontrollers > 1 else ''} x 8 counters"
        print(
            f"chain, {label}: {rate:,.0f} points/s (plain loop {plain_rate:,.0f}), "
            f"engine overhead {overhead_us:.1f} µs/point wall, {cpu_us:.1f} µs/point CPU"
        )
        figure(NAME, f"points_per_s_{ncontrollers}ctrl", rate, "points/s",
               baseline=plain_rate, target=">= 10000", note=spread(rates, ",.0f"))  # fmt: skip
        figure(NAME, f"overhead_us_per_point_{ncontrollers}ctrl", overhead_us, "us",
               baseline=0.0, target="<= 80", note=spread(overheads, ".1f"))  # fmt: skip
        # CPU time: robust on a loaded machine
        figure(NAME, f"overhead_cpu_us_per_point_{ncontrollers}ctrl", cpu_us, "us",
               baseline=0.0, target="<= 80", note=spread(cpus, ".1f"))  # fmt: skip


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else sized(10_000, 50))
