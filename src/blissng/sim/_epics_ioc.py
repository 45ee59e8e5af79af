"""A simulated EPICS IOC: Channel Access (caproto) and PV Access (p4p) in one process.

The process :class:`EpicsSimIoc` runs (``python -m blissng.sim._epics_ioc --ca-port P
--pva-port Q --pva-broadcast-port B``) serves, on 127.0.0.1 only (prefix ``SIM:``):

==============================  ============================================================
``SIM:m1``, ``SIM:m2``          motor records: ``VAL`` (a put starts the move), ``RBV``,
                                ``DRBV``, ``DMOV`` (1 -> 0 -> 1 around every move), ``MOVN``,
                                ``STOP`` (a put of 1 decelerates to rest), ``VELO``,
                                ``ACCL`` (seconds to velocity), ``HLM``/``LLM`` (soft limits:
                                a put of VAL beyond them is refused and sets ``LVIO``),
                                ``HLS``/``LLS`` (limit switches), ``EGU``, ``MSTA`` (status
                                bits: DONE, PLUS_LS, MOVING, MINUS_LS...). Motion follows the
                                simulators' trapezoidal profile.
``SIM:m1:HHL``, ``SIM:m1:HLL``  simulator only: where the limit switches are
``SIM:sc:S1`` .. ``SIM:sc:S3``  a scaler's channels as rates: S1 the clock (1e7 /s), S2 a
                                flat monitor, S3 a detector peaking at ``SIM:m1`` = 1.0
``SIM:spectrum``                a waveform (256 doubles) whose line follows S3
``SIM:setpoint``, ``SIM:readback``  a settable value and its readback
``SIM:reset``                   simulator only: a put resets every PV above
==============================  ============================================================

and over PV Access (p4p's server): ``SIM:pva:det`` (NTScalar, S3's value without noise, posted
every 20 ms while ``SIM:m1`` moves, every second otherwise),
``SIM:pva:spectrum`` (NTScalarArray) and ``SIM:pva:setpoint`` (writable NTScalar).

:class:`EpicsSimIoc` starts the process, stops it, kills it and restarts it on the same ports.
Clients find it through the standard environment variables: :func:`client_environment` gives
them (``EPICS_CA_ADDR_LIST=127.0.0.1``, ``EPICS_CA_AUTO_ADDR_LIST=NO``, the ports...), and
:func:`shared_ioc` starts one IOC per process and sets them, since libca reads them once per
process (docs/control-systems.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blissng.sim._process import ServerProcess, free_port
from blissng.sim.servers import _motion as motion

PREFIX = "SIM:"
MOTORS = ("m1", "m2")
SPECTRUM_BINS = 256
TICK = 0.02  # seconds between readback updates while a motor moves

# MSTA bits (motor record)
MSTA_DONE = 1 << 1
MSTA_PLUS_LS = 1 << 2
MSTA_PROBLEM = 1 << 9
MSTA_MOVING = 1 << 10
MSTA_MINUS_LS = 1 << 13


def client_environment(ca_port: int, pva_port: int, pva_broadcast_port: int) -> dict[str, str]:
    """EPICS client variables that reach this IOC and nothing beyond 127.0.0.1."""
    return {
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(ca_port),
        "EPICS_CA_REPEATER_PORT": str(ca_port + 1),
        "EPICS_PVA_ADDR_LIST": f"127.0.0.1:{pva_broadcast_port}",
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_BROADCAST_PORT": str(pva_broadcast_port),
        "EPICS_PVA_SERVER_PORT": str(pva_port),
    }


class EpicsSimIoc(ServerProcess):
    """The simulated IOC process (start, stop, kill, restart on the same ports)."""

    module = "blissng.sim._epics_ioc"
    what = "EPICS IOC"
    log_name = "epics_ioc.log"

    def __init__(
        self,
        directory: Path,
        *,
        ca_port: int | None = None,
        pva_port: int | None = None,
        pva_broadcast_port: int | None = None,
    ) -> None:
        super().__init__(directory)
        self.ca_port = ca_port or free_port()
        self.pva_port = pva_port or free_port()
        self.pva_broadcast_port = pva_broadcast_port or free_port()

    def arguments(self) -> list[str]:
        return [
            *("--ca-port", str(self.ca_port)),
            *("--pva-port", str(self.pva_port)),
            *("--pva-broadcast-port", str(self.pva_broadcast_port)),
        ]

    @property
    def environment(self) -> dict[str, str]:
        return client_environment(self.ca_port, self.pva_port, self.pva_broadcast_port)

    @property
    def pvs(self) -> list[str]:
        return list(self.info.get("pvs", []))

    def reset(self) -> None:
        """Every PV back to its start-up value (a put to ``SIM:reset``), the IOC restarted
        first if it is not running. Needs caproto (its client)."""
        if not self.alive:
            self.restart()
        from caproto.sync.client import write

        write(f"{PREFIX}reset", 1, notify=True, timeout=10.0, repeater=False)

    def __repr__(self) -> str:
        return f"<EpicsSimIoc ca={self.ca_port} pva={self.pva_port} pid={self.pid}>"


_shared: EpicsSimIoc | None = None
_shared_users = 0
_shared_lock = threading.Lock()
_ports: dict[str, int] = {}  # the ports this process's shared IOC uses (libca keeps them)


@contextlib.contextmanager
def shared_ioc(directory: Path) -> Iterator[EpicsSimIoc]:
    """The process's simulated IOC, started by the first user, stopped after the last.

    libca reads its configuration once per process, so every client of this process (a test
    session's fixture, the demo's simulators started in the same process) shares one IOC and
    one CA port. The first call sets the ``EPICS_CA_*`` / ``EPICS_PVA_*`` variables of this
    process (``os.environ``) to reach it.
    """
    global _shared, _shared_users
    with _shared_lock:
        if _shared is None:
            # Ports chosen once per process (not taken from the environment: a child process
            # inherits its parent's EPICS_* variables, and needs an IOC of its own).
            ioc = EpicsSimIoc(directory, **_ports)
            _ports.update(
                ca_port=ioc.ca_port,
                pva_port=ioc.pva_port,
                pva_broadcast_port=ioc.pva_broadcast_port,
            )
            ioc.start()
            os.environ.update(ioc.environment)
            _start_repeater()
            _shared = ioc
        _shared_users += 1
        ioc = _shared
    try:
        yield ioc
    finally:
        with _shared_lock:
            _shared_users -= 1
            if _shared_users == 0 and _shared is not None:
                _shared.stop()
                _shared = None


_repeater_port: int | None = None


def _start_repeater() -> None:
    """A CA repeater on 127.0.0.1 (``EPICS_CA_REPEATER_PORT``), once per process, before
    libca first looks for one (it outlives an IOC that a test kills and restarts)."""
    global _repeater_port
    from ._ca_repeater import start_repeater  # caproto: loaded when an IOC starts

    port = int(os.environ["EPICS_CA_REPEATER_PORT"])
    if _repeater_port != port:
        start_repeater(port)
        _repeater_port = port


# ------------------------------------------------------------------------------ the IOC


def _build_ioc() -> Any:
    """The caproto PVGroup (imported here: caproto is needed only in the IOC's process)."""
    from caproto import ChannelType
    from caproto.server import PVGroup, SubGroup, pvproperty

    class SimMotor(PVGroup):
        """One motor record and its simulated mechanics."""

        motor = pvproperty(value=0.0, name="", record="motor", precision=4)
        hard_high = pvproperty(value=1e9, name=":HHL", doc="simulated positive limit switch")
        hard_low = pvproperty(value=-1e9, name=":HLL", doc="simulated negative limit switch")

        def __init__(self, *args: Any, velocity: float = 2.0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.default_velocity = velocity
            self.model: motion.Motion | None = None
            self.task: asyncio.Task[None] | None = None

        @property
        def fields(self) -> Any:
            return self.motor.field_inst

        async def reset(self) -> None:
            if self.task is not None:
                self.task.cancel()
                self.task = None
            self.model = None
            f = self.fields
            await self.hard_high.write(1e9)
            await self.hard_low.write(-1e9)
            await f.velocity.write(self.default_velocity)
            await f.seconds_to_velocity.write(0.1)
            await f.user_high_limit.write(0.0)
            await f.user_low_limit.write(0.0)
            await f.engineering_units.write("mm")
            await self.motor.write(0.0, verify_value=False)
            await self._post(0.0, moving=False, switches=0)

        async def _post(self, position: float, *, moving: bool, switches: int) -> None:
            f = self.fields
            await f.user_readback_value.write(position)
            await f.dial_readback_value.write(position)
            await f.raw_readback_value.write(round(position * 10000))
            if not moving:
                await f.user_high_limit_switch.write(1 if switches > 0 else 0)
                await f.user_low_limit_switch.write(1 if switches < 0 else 0)
            status = MSTA_MOVING if moving else MSTA_DONE
            if switches > 0:
                status |= MSTA_PLUS_LS
            elif switches < 0:
                status |= MSTA_MINUS_LS
            await f.motor_status.write(status)
            await f.motor_is_moving.write(1 if moving else 0)
            await f.done_moving_to_value.write(0 if moving else 1)

        def position(self, t: float) -> float:
            m = self.model
            if m is None:
                return float(self.fields.user_readback_value.value)
            return m.at(t)[0]

        @motor.putter  # type: ignore[no-redef]
        async def motor(self, instance: Any, value: float) -> float:
            f = self.fields
            high, low = f.user_high_limit.value, f.user_low_limit.value
            current = float(instance.value)
            if high != low and not low <= value <= high:
                await f.limit_violation.write(1)
                return current  # refused, as the motor record does: VAL keeps its value
            await f.limit_violation.write(0)
            if self.model is not None:
                return current  # the motor record would retarget; the simulation refuses
            t = time.monotonic()
            here = float(f.user_readback_value.value)
            velocity = float(f.velocity.value) or 1.0
            acceleration = velocity / max(float(f.seconds_to_velocity.value), 1e-3)
            low_switch, high_switch = float(self.hard_low.value), float(self.hard_high.value)
            if (value > here and here >= high_switch) or (value < here and here <= low_switch):
                return current  # on the switch, that way: nothing moves
            self.model = motion.move(
                t, here, value, velocity, acceleration, low_switch, high_switch
            )
            await self._post(here, moving=True, switches=0)
            self.task = asyncio.get_running_loop().create_task(self._follow())
            return value

        async def _follow(self) -> None:
            while self.model is not None:
                t = time.monotonic()
                m = self.model
                if t >= m.end:
                    self.model = None
                    final = m.final if not math.isnan(m.final) else self.position(t)
                    await self._post(final, moving=False, switches=m.limit)
                    return
                await self.fields.user_readback_value.write(m.at(t)[0])
                await asyncio.sleep(min(TICK, m.end - t))

        @motor.fields.stop.putter  # type: ignore[no-redef]
        async def motor(fields: Any, instance: Any, value: int) -> int:
            group = fields.parent.group
            m = group.model
            if value and m is not None:
                t = time.monotonic()
                velocity = float(fields.velocity.value) or 1.0
                acceleration = velocity / max(float(fields.seconds_to_velocity.value), 1e-3)
                low, high = float(group.hard_low.value), float(group.hard_high.value)
                group.model = motion.stop(m, t, acceleration, low, high)
                if not group.model.phases:  # already at rest
                    group.model = motion.Motion((), t, t, m.at(t)[0])
                await group.motor.write(group.model.final, verify_value=False)
            return 0

    class SimIoc(PVGroup):
        m1 = SubGroup(SimMotor, prefix="m1", velocity=2.0)
        m2 = SubGroup(SimMotor, prefix="m2", velocity=5.0)
        s1 = pvproperty(value=1e7, name="sc:S1", read_only=True, doc="clock rate")
        s2 = pvproperty(value=1e5, name="sc:S2", read_only=True, doc="monitor rate")
        s3 = pvproperty(value=0.0, name="sc:S3", read_only=True, doc="detector rate")
        spectrum = pvproperty(
            value=[0.0] * SPECTRUM_BINS, name="spectrum", dtype=ChannelType.DOUBLE,
            max_length=SPECTRUM_BINS, read_only=True,
        )  # fmt: skip
        setpoint = pvproperty(value=0.0, name="setpoint", precision=3)
        readback = pvproperty(value=0.0, name="readback", read_only=True, precision=3)
        reset = pvproperty(value=0, name="reset", doc="simulator only: put 1 to reset")

        rng = random.Random(0)

        def detector(self) -> float:
            p = self.m1.position(time.monotonic())
            return 10.0 + 1000.0 * math.exp(-0.5 * ((p - 1.0) / 0.5) ** 2)

        @s3.getter  # type: ignore[no-redef]
        async def s3(self, instance: Any) -> float:
            return self.detector() * (1.0 + self.rng.gauss(0.0, 0.01))

        @s2.getter  # type: ignore[no-redef]
        async def s2(self, instance: Any) -> float:
            return 1e5 * (1.0 + self.rng.gauss(0.0, 0.001))

        @spectrum.getter  # type: ignore[no-redef]
        async def spectrum(self, instance: Any) -> list[float]:
            height = self.detector()
            centre = SPECTRUM_BINS / 2
            return [1.0 + height * math.exp(-0.5 * ((i - centre) / 8.0) ** 2)
                    for i in range(SPECTRUM_BINS)]  # fmt: skip

        @setpoint.putter  # type: ignore[no-redef]
        async def setpoint(self, instance: Any, value: float) -> float:
            await self.readback.write(value)
            return value

        @reset.putter  # type: ignore[no-redef]
        async def reset(self, instance: Any, value: int) -> int:
            for m in (self.m1, self.m2):
                await m.reset()
            await self.setpoint.write(0.0, verify_value=False)
            await self.readback.write(0.0)
            self.rng = random.Random(0)
            return 0

    return SimIoc


def _serve_pva(ioc: Any, options: argparse.Namespace) -> tuple[Any, list[str]]:
    """p4p's server beside caproto's: SIM:pva:det, SIM:pva:spectrum, SIM:pva:setpoint."""
    from p4p.nt import NTScalar
    from p4p.server import Server
    from p4p.server.asyncio import SharedPV

    det = SharedPV(nt=NTScalar("d"), initial=0.0)
    spectrum = SharedPV(nt=NTScalar("ad"), initial=[0.0] * SPECTRUM_BINS)

    class Settable:
        def put(self, pv: Any, op: Any) -> None:
            pv.post(op.value())
            op.done()

    setpoint = SharedPV(nt=NTScalar("d"), initial=0.0, handler=Settable())
    pvs = {f"{PREFIX}pva:det": det, f"{PREFIX}pva:spectrum": spectrum,
           f"{PREFIX}pva:setpoint": setpoint}  # fmt: skip
    conf = {
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_SERVER_PORT": str(options.pva_port),
        "EPICS_PVAS_BROADCAST_PORT": str(options.pva_broadcast_port),
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
    }
    server = Server(providers=[pvs], conf=conf, useenv=False)

    async def post_forever() -> None:
        """Every 20 ms while the detector's value changes (SIM:m1 moves), else every second:
        an idle IOC costs the machine next to nothing."""
        last, posted = math.nan, 0.0
        while True:
            value = ioc.detector()
            stamp = time.time()
            if value != last or stamp - posted >= 1.0:
                det.post(value, timestamp=stamp)
                centre = SPECTRUM_BINS / 2
                line = [1.0 + value * math.exp(-0.5 * ((i - centre) / 8.0) ** 2)
                        for i in range(SPECTRUM_BINS)]  # fmt: skip
                spectrum.post(line, timestamp=stamp)
                last, posted = value, stamp
            await asyncio.sleep(0.02)

    server.post_task = post_forever  # started by the caller on the loop
    return server, list(pvs)


async def _run(options: argparse.Namespace) -> None:
    from caproto.asyncio.server import Context

    from blissng.sim._process import announce_ready

    ioc = _build_ioc()(prefix=PREFIX)
    context = Context(ioc.pvdb, ["127.0.0.1"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(0, 4096) else None)
    server, pva_names = _serve_pva(ioc, options)

    async def ready(async_lib: Any) -> None:
        for m in (ioc.m1, ioc.m2):
            await m.reset()
        announce_ready({"pid": os.getpid(), "pvs": [*ioc.pvdb, *pva_names]})

    tasks = [
        loop.create_task(context.run(log_pv_names=False, startup_hook=ready)),
        loop.create_task(server.post_task()),
    ]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m blissng.sim._epics_ioc", description=__doc__)
    parser.add_argument("--ca-port", type=int, required=True)
    parser.add_argument("--pva-port", type=int, required=True)
    parser.add_argument("--pva-broadcast-port", type=int, required=True)
    options = parser.parse_args(argv)
    os.environ.update(
        {
            "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
            "EPICS_CAS_SERVER_PORT": str(options.ca_port),
            "EPICS_CA_SERVER_PORT": str(options.ca_port),  # caproto's UDP search port
            "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
            "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
            "EPICS_CAS_BEACON_PORT": str(options.ca_port + 1),
            "EPICS_CA_REPEATER_PORT": str(options.ca_port + 1),
            # caproto waits up to this long for more monitor updates to batch (default 10 ms
            # per update): a motor record's DMOV would reach clients 10 ms late.
            "CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC": "0.0005",
        }
    )
    asyncio.run(_run(options))


if __name__ == "__main__":
    main()


__all__ = ["MOTORS", "PREFIX", "EpicsSimIoc", "client_environment", "shared_ioc"]
