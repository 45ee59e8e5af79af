"""The simulator sets that tests and the demo use, and the demo's two-process launcher."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio

from blissng.sim.servers._launcher import SimHost, open_sim_host, start_sim_host
from blissng.sim.servers._spec import (
    BadDeviceSpec,
    CameraSpec,
    GoodDeviceSpec,
    HostSpec,
    McaSpec,
    MotorControllerSpec,
    ScalerSpec,
    TriggerBoxSpec,
)

# The bad device's standard rate (packets/s) and send queue (packets): at most a fifth of the
# delivered capacity measured by benchmarks/comm_roundtrip.py (one reader among 16 busy tasks:
# 5 000-11 000 packets/s on a loaded 2-core machine); the queue holds 0.1 s.
BAD_DEVICE_RATE = 500.0
BAD_DEVICE_FIFO = 50


def standard_spec(directory: Path, *, seed: int | None = None) -> HostSpec:
    """motors (pty, 6 axes), scaler, trigger, mca, camera, good: one host, shared state."""
    return HostSpec(
        directory=Path(directory),
        seed=seed,
        simulators={
            "motors": MotorControllerSpec(),
            "scaler": ScalerSpec(),
            "trigger": TriggerBoxSpec(),
            "mca": McaSpec(),
            "camera": CameraSpec(),
            "good": GoodDeviceSpec(),
        },
    )


def bad_device_spec(
    directory: Path, *, rate: float = BAD_DEVICE_RATE, fifo: int = BAD_DEVICE_FIFO
) -> HostSpec:
    """The bad device alone (its own process), on a unix socket."""
    return HostSpec(
        directory=Path(directory), simulators={"bad": BadDeviceSpec(rate=rate, fifo=fifo)}
    )


def demo_spec(directory: Path) -> HostSpec:
    """The demo beamline's main host (same set as the tests)."""
    return standard_spec(directory)


class DemoSimulators:
    """The demo's two hosts: ``main`` (everything but the bad device) and ``bad``."""

    def __init__(self, main: SimHost, bad: SimHost) -> None:
        self.main = main
        self.bad = bad

    @property
    def urls(self) -> dict[str, str]:
        """Every simulator's address: {"motors": "serial:///...", ..., "bad": "unix:///..."}."""
        return {**self.main.urls, **self.bad.urls}

    def host_of(self, name: str) -> SimHost:
        return self.bad if name in self.bad.sims else self.main


@contextlib.asynccontextmanager
async def open_demo_simulators(directory: Path) -> AsyncIterator[DemoSimulators]:
    """Start the demo's simulators (two processes) for the duration of the block."""
    directory = Path(directory)
    async with contextlib.AsyncExitStack() as stack:
        hosts: dict[str, SimHost] = {}

        async def open_host(key: str, spec: HostSpec) -> None:
            hosts[key] = await stack.enter_async_context(open_sim_host(spec))

        # Both processes start at once: each spends most of a second importing and binding,
        # which the demo's time to ready paid twice when they started one after the other.
        async with anyio.create_task_group() as tg:
            tg.start_soon(open_host, "main", demo_spec(directory / "main"))
            tg.start_soon(open_host, "bad", bad_device_spec(directory / "bad"))
        yield DemoSimulators(hosts["main"], hosts["bad"])


@contextlib.contextmanager
def start_demo_simulators(directory: Path) -> Iterator[DemoSimulators]:
    """Sync twin of :func:`open_demo_simulators`."""
    directory = Path(directory)
    with (
        start_sim_host(demo_spec(directory / "main")) as main,
        start_sim_host(bad_device_spec(directory / "bad")) as bad,
    ):
        yield DemoSimulators(main, bad)


__all__ = [
    "BAD_DEVICE_FIFO",
    "BAD_DEVICE_RATE",
    "DemoSimulators",
    "bad_device_spec",
    "demo_spec",
    "open_demo_simulators",
    "standard_spec",
    "start_demo_simulators",
]
