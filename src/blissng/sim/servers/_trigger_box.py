"""A simulated trigger box (a MUSST, a PandA): it emits trains of pulses to its outputs, the
detector simulators of the same host, and latches its encoder inputs with every pulse.

Its encoder inputs are the axes of the host's motor controller: the box follows their
motion through the same trapezoidal profiles the controller uses (their recorded history),
so a pulse *at a position* fires at the instant the encoder passes it, and a *time* train can
start when the encoder passes a start position. Pulses are computed on the device's own
timeline, a few milliseconds at a time (a batch per wake-up, not a task tick per pulse), and
delivered to the detectors as arrays of pulse times: a 10 kHz train costs the simulator a few
hundred wake-ups per second.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Literal

import anyio
import numpy as np

from blissng.sim.servers import _motion as motion
from blissng.sim.servers._base import (
    Client,
    SimError,
    Simulator,
    arg_float,
    arg_int,
    expect_args,
    now,
)
from blissng.sim.servers._detector import PointBuffer
from blissng.sim.servers._spec import TriggerBoxSpec

#: Seconds between two computations of the pulses due (while a train waits or runs fast).
TICK = 0.002


@dataclasses.dataclass(frozen=True)
class Train:
    """A pulse program: ``n`` pulses of ``width`` seconds.

    TIME: one every ``period`` seconds, from START, or from the instant encoder ``input``
    passes ``start`` (counts). POSITION: pulse ``k`` when encoder ``input`` passes
    ``start + k * step`` (counts; the sign of ``step`` is the direction).
    """

    mode: Literal["TIME", "POSITION"]
    n: int
    width: float
    period: float = 0.0
    input: int = 0
    start: float | None = None
    step: float = 0.0


class TriggerBoxSim(Simulator):
    kind = "trigger_box"

    def __init__(self, name: str, spec: TriggerBoxSpec, host: Any) -> None:
        super().__init__(name, spec, host)
        self.outputs: dict[str, bool] = {}
        self.train: Train | None = None
        self.latch: list[int] = []
        self.count = 0
        self.status = "IDLE"
        self.buffer = PointBuffer()
        self._scope: anyio.CancelScope | None = None
        self._t_start = 0.0  # START, on the box's clock
        self._t_first: float | None = None  # first pulse of a TIME train, once known
        self._t_done = 0.0  # pulses are computed up to this instant
        self._t_last = 0.0  # last pulse emitted
        self.reset()
        self.commands = {
            "*IDN?": lambda a, c: "SIMTRIG 1.0",
            "?OUT": lambda a, c: " ".join(
                f"{n}:{'ON' if on else 'OFF'}" for n, on in self.outputs.items()
            ),
            "OUT": self.c_out,
            "?INP": lambda a, c: str(len(self._motors().axes) if self._motors() else 0),
            "LATCH": self.c_latch,
            "?LATCH": lambda a, c: " ".join(str(i) for i in self.latch),
            "PULSES": self.c_pulses,
            "PPULSES": self.c_ppulses,
            "START": self.c_start,
            "STOP": self.c_stop,
            "?STA": self.q_sta,
            "?CNT": self.q_cnt,
            "READ": self.c_read,
        }

    def reset(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        self.outputs = {name: True for name in self.spec.outputs}
        self.train = None
        self.latch = []
        self.count = 0
        self.status = "IDLE"
        self.buffer = PointBuffer()

    # -- encoder inputs ----------------------------------------------------------------------

    def _motors(self) -> Any:
        return self.host.simulator_named(self.spec.motors) if self.spec.motors else None

    def _input(self, args: list[str], index: int) -> int:
        number = arg_int(args, index, "input")
        motors = self._motors()
        count = len(motors.axes) if motors else 0
        if not 1 <= number <= count:
            raise SimError(3, f"unknown input {number} (inputs are 1..{count})")
        return number

    def _axis(self, number: int) -> Any:
        return self._motors().axes[number]

    # -- commands ----------------------------------------------------------------------------

    def c_out(self, args: list[str], client: Client) -> str:
        expect_args(args, 2)
        if args[0] not in self.outputs:
            raise SimError(3, f"unknown output {args[0]!r}; outputs are {' '.join(self.outputs)}")
        value = args[1].upper()
        if value not in ("ON", "OFF"):
            raise SimError(2, f"expected ON or OFF, got {args[1]!r}")
        self.outputs[args[0]] = value == "ON"
        return "OK"

    def c_latch(self, args: list[str], client: Client) -> str:
        self._idle("the latched inputs")
        self.latch = [self._input(args, i) for i in range(len(args))]
        return "OK"

    def _idle(self, what: str) -> None:
        self._advance(now())
        if self.status != "IDLE":
            raise SimError(10, f"cannot change {what} while {self.status}; STOP first")

    def c_pulses(self, args: list[str], client: Client) -> str:
        expect_args(args, 3, 5)
        if len(args) == 4:
            raise SimError(2, "a start position needs its input: PULSES n period width input start")
        self._idle("the pulses")
        n = arg_int(args, 0, "number of pulses")
        period = arg_float(args, 1, "period")
        width = arg_float(args, 2, "width")
        if n < 1 or period <= 0 or not 0 < width < period:
            raise SimError(8, "need n >= 1, period > 0 and 0 < width < period")
        if len(args) == 5:
            source, start = self._input(args, 3), arg_float(args, 4, "start position")
            self.train = Train("TIME", n, width, period=period, input=source, start=start)
        else:
            self.train = Train("TIME", n, width, period=period)
        return "OK"

    def c_ppulses(self, args: list[str], client: Client) -> str:
        expect_args(args, 5)
        self._idle("the pulses")
        n = arg_int(args, 0, "number of pulses")
        source = self._input(args, 1)
        start = arg_float(args, 2, "start position")
        step = arg_float(args, 3, "step")
        width = arg_float(args, 4, "width")
        if n < 1 or step == 0 or width <= 0:
            raise SimError(8, "need n >= 1, step != 0 and width > 0")
        self.train = Train("POSITION", n, width, input=source, start=start, step=step)
        return "OK"

    def c_start(self, args: list[str], client: Client) -> str:
        if self.train is None:
            raise SimError(10, "START before PULSES or PPULSES")
        self._idle("the pulses")
        t = now()
        self.count = 0
        self.buffer = PointBuffer()
        self._t_start = self._t_done = t
        train = self.train
        self._t_first = t if train.mode == "TIME" and train.start is None else None
        self.status = "RUNNING" if self._t_first is not None else "ARMED"
        scope = anyio.CancelScope()
        self._scope = scope
        self.task_group.start_soon(self._run, scope)
        return "OK"

    def c_stop(self, args: list[str], client: Client) -> str:
        self._advance(now())  # pulses that happened before the STOP were emitted
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        self.status = "IDLE"
        return "OK"

    def q_sta(self, args: list[str], client: Client) -> str:
        self._advance(now())
        return self.status

    def q_cnt(self, args: list[str], client: Client) -> str:
        self._advance(now())
        return str(self.count)

    def c_read(self, args: list[str], client: Client) -> bytes:
        """``DATA <n> <ncols> f8`` then the latched values: per pulse its time since START
        (s) and the encoder counts of each latched input, little-endian float64."""
        expect_args(args, 1)
        limit = arg_int(args, 0, "max")
        if limit < 0:
            raise SimError(8, "max must be >= 0")
        self._advance(now())
        points = self.buffer.take(limit)
        columns = 1 + len(self.latch)
        n = 0 if points is None else len(points)
        header = f"DATA {n} {columns} f8\n".encode("ascii")
        if points is None:
            return header
        return header + np.ascontiguousarray(points, dtype="<f8").tobytes()

    # -- the pulses --------------------------------------------------------------------------

    async def _run(self, scope: anyio.CancelScope) -> None:
        """Wake up when pulses are due (at most every TICK) until the train is done."""
        train = self.train
        assert train is not None
        with scope:
            while True:
                await anyio.sleep(self._wait(train))
                self._advance(now())

    def _wait(self, train: Train) -> float:
        if self.count >= train.n:  # the last pulse's width
            return max(self._t_last + train.width - time.monotonic(), 0.0)
        if train.mode == "TIME" and self._t_first is not None:
            due = self._t_first + self.count * train.period - time.monotonic()
            return max(due, TICK)
        return TICK

    def _advance(self, t: float) -> None:
        """Emit every pulse due in (pulses computed so far, t]."""
        train = self.train
        if train is None or self.status == "IDLE" or t <= self._t_done:
            return
        self._pulses_until(train, t)
        if self.count >= train.n and t >= self._t_last + train.width:
            self.status = "IDLE"  # done: the last pulse has ended
            if self._scope is not None:
                self._scope.cancel()
                self._scope = None

    def _pulses_until(self, train: Train, t: float) -> None:
        lo, hi = self._t_done, t
        self._t_done = t
        if train.mode == "TIME":
            if self._t_first is None:
                assert train.start is not None
                crossing = self._crossing(train.input, train.start, lo, hi)
                if crossing is None:
                    return
                self._t_first = crossing
                self.status = "RUNNING"
            end = min(train.n, math.floor((hi - self._t_first) / train.period) + 1)
            if end <= self.count:
                return
            times = self._t_first + np.arange(self.count, end) * train.period
            times = times[times <= hi]
        else:
            times = self._position_pulses(train, lo, hi)
        if len(times):
            self.status = "RUNNING"
            self._emit(train, times)

    def _crossing(self, source: int, counts: float, lo: float, hi: float) -> float | None:
        """When encoder ``source`` passes ``counts`` in (lo, hi], if it does."""
        for segment, begin, end in self._axis(source).segments(lo, hi):
            if segment.motion is None or segment.ratio * (1 - segment.slip) == 0:
                continue
            target = segment.steps_for_encoder(np.array([counts]))
            t = motion.crossing_times(segment.motion, target, begin)[0]
            if not math.isnan(t) and t <= end:
                return float(t)
        return None

    def _position_pulses(self, train: Train, lo: float, hi: float) -> np.ndarray:
        """The pulses of a POSITION train in (lo, hi]: positions are passed in order, in the
        train's direction; a position already behind the encoder waits to be passed again."""
        assert train.start is not None
        found: list[np.ndarray] = []
        k = self.count
        for segment, begin, end in self._axis(train.input).segments(lo, hi):
            if k >= train.n or segment.motion is None:
                continue
            if segment.ratio * (1 - segment.slip) == 0:
                continue
            e_lo, e_hi = segment.encoder(np.array([begin, end]))
            u_lo = (e_lo - train.start) / train.step  # in units of pulses
            u_hi = (e_hi - train.start) / train.step
            if u_hi <= u_lo or k <= u_lo:
                continue  # moving the other way, or the next position is behind
            stop = min(train.n, math.floor(u_hi) + 1)
            if stop <= k:
                continue
            counts = train.start + np.arange(k, stop) * train.step
            times = motion.crossing_times(segment.motion, segment.steps_for_encoder(counts), begin)
            # a position passed exactly at the window's end may be lost to rounding: it was
            # passed by then
            found.append(np.minimum(np.where(np.isnan(times), end, times), end))
            k = stop
        if not found:
            return np.empty(0)
        return np.sort(np.concatenate(found))

    def _emit(self, train: Train, times: np.ndarray) -> None:
        self.count += len(times)
        self._t_last = float(times[-1])
        columns = [times - self._t_start]
        for source in self.latch:
            columns.append(np.rint(self._axis(source).encoder_at(times)))
        self.buffer.append(np.column_stack(columns))
        for name, on in self.outputs.items():
            target = self.host.simulator_named(name) if on else None
            if target is not None:
                target.on_pulses(times, train.width)

    def stats(self) -> dict[str, Any]:
        self._advance(now())
        return {
            "status": self.status,
            "count": self.count,
            "outputs": dict(self.outputs),
            "latch": list(self.latch),
            "train": dataclasses.asdict(self.train) if self.train else None,
        }
