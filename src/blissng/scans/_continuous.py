"""Continuous scans, with the names and meanings of BLISS's fscan package: ``fscan``,
``f2scan``, ``fscan2d``, ``ftimescan``.

The motor moves at constant velocity through the range while the trigger box fires one pulse
per point, at times (``scan_mode="TIME"``: every ``acq_time + latency_time`` seconds from the
instant the encoder passes the first point) or at positions (``scan_mode="POSITION"``: where
the encoder passes each point); the detectors acquire ``acq_time`` on each pulse and the
encoder is latched with it. The chain is ``blissng.acquisition``'s ``ContinuousMotionMaster``
over a ``LatchingTriggerMaster``; the detectors are read in batches.

Everything is checked before anything moves: the velocity ``step_size / (acq_time +
latency_time)`` against the motor's ``velocity_high_limit``, and the run-up and run-out (the
distance to reach that velocity before the first point and to stop after the last one)
against its limits. The trigger box is the session's object whose ``inputs`` wire an encoder
input to the scanned motor (or ``trigger=``). The arguments are checked and the counters and the
trigger box found in ``_continuous_checks``; here are the motion, the chain and the commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from blissng.acquisition import (
    AcquirableSlave,
    AcquisitionChain,
    ContinuousMotionMaster,
    LatchedAxis,
    LatchingTriggerMaster,
    LineMotion,
    TriggerType,
)
from blissng.devices import LatchingTriggerSource, PulseTrain, ScanAxis

from ._arguments import ScanArgumentError, int_argument, number_argument, scan_title
from ._bridge import command
from ._continuous_checks import (
    check_continuous_keywords,
    hardware_counters,
    scan_axes,
    scan_mode_argument,
    step_argument,
    time_arguments,
    trigger_source,
)
from ._scan import Scan, ScanError
from ._step_scan import make_scan, maybe_run


class ContinuousScan(Scan):
    """A continuous scan: pauses between lines only (``fscan2d``); a one-line scan refuses."""

    def __init__(self, *args: Any, pausable: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pausable = pausable

    def pause(self) -> None:
        if not self.pausable:
            raise ScanError(
                f"{self.name} cannot pause: its motor runs through the whole range at constant "
                "velocity, there is no point between lines to stop at. Abort it (Ctrl-C) and "
                "scan again, or use fscan2d, which pauses at the end of a line"
            )
        super().pause()


# ---------------------------------------------------------------------------- the motion


class _Run:
    """One motor's part of a continuous line: velocity, run-up and run-out, checked."""

    def __init__(
        self,
        command_name: str,
        motor: ScanAxis,
        first: float,
        step: float,
        npoints: int,
        period: float,
    ) -> None:
        self.motor = motor
        self.first = first
        self.step = step
        self.npoints = npoints
        self.velocity = abs(step) / period
        self.direction = 1.0 if step > 0 else -1.0
        unit = getattr(motor, "unit", None) or "units"
        if self.velocity > motor.velocity_high_limit:
            raise ScanArgumentError(
                f"{command_name}: {motor.name} would move at {self.velocity:g} {unit}/s "
                f"(step_size {abs(step):g} every {period:g} s = acq_time + latency_time), above "
                f"its limit {motor.velocity_high_limit:g} {unit}/s (velocity_high_limit): use "
                "a smaller step_size or a longer acq_time or latency_time; nothing moved"
            )
        self.ramp_time = self.velocity / motor.acceleration

    def line(self, first: float, step: float, ramp_time: float, margin_time: float) -> LineMotion:
        """The line from ``first`` by ``step``: every motor of a scan reaches its velocity
        ``ramp_time`` after the start and then runs ``margin_time`` before its first point
        (so all pass their first points together) and after its last one."""
        direction = 1.0 if step > 0 else -1.0
        points = first + step * np.arange(self.npoints)
        accelerating = self.velocity * self.velocity / (2 * self.motor.acceleration)
        before = accelerating + self.velocity * (ramp_time - self.ramp_time + margin_time)
        after = accelerating + self.velocity * margin_time
        start = first - direction * before
        stop = first + step * self.npoints + direction * after
        return LineMotion(self.motor, start, stop, self.velocity, points)


def _check_run(line: LineMotion, command_name: str) -> None:
    """The run-up and the run-out within the limits: refused before anything moves."""
    motor = line.axis
    unit = getattr(motor, "unit", None) or "units"
    speed = f"{line.velocity:g} {unit}/s (acceleration {motor.acceleration:g} {unit}/s²)"
    for target, point, need in (
        (line.start, line.points[0], f"before the first point to reach {speed}: its run-up from"),
        (line.stop, line.points[-1], f"after the last point to stop from {speed}: its run-out to"),
    ):
        try:
            motor.check_limits(target)
        except Exception:
            limits = getattr(motor, "limits", None)
            where = f" [{limits[0]:g}, {limits[1]:g}]" if limits else ""
            raise ScanArgumentError(
                f"{command_name}: {motor.name} needs {abs(target - point):g} {unit} {need} "
                f"{target:g} is outside its limits{where}. Scan further from the limits, or "
                "slower; nothing moved"
            ) from None


def _train(
    mode: str,
    latched: LatchedAxis,
    first: float,
    step: float,
    npoints: int,
    period: float,
    command_name: str,
) -> PulseTrain:
    start = latched.to_counts(first)
    width = period / 2
    if mode == "TIME":
        return PulseTrain(npoints, width, period=period, input=latched.input, start=start)
    counts = latched.to_counts(first + step) - start
    if abs(counts) < 1:
        raise ScanArgumentError(
            f"{command_name}: step_size {abs(step):g} is less than one encoder count of "
            f"{latched.axis.name} ({1 / latched.axis.encoder_steps_per_unit:g}): the trigger "
            "box cannot place position pulses that close; use scan_mode='TIME'"
        )
    return PulseTrain(npoints, width, input=latched.input, start=start, step=counts)


def _latched(source: LatchingTriggerSource, motors: Sequence[ScanAxis]) -> list[LatchedAxis]:
    latched = []
    for motor in motors:
        input_ = source.input_of(motor.name)
        if input_ is not None:
            latched.append(LatchedAxis(motor, input_))
    return latched


def _chain(
    lines: Sequence[Sequence[LineMotion]],
    source: LatchingTriggerSource,
    trains: Sequence[PulseTrain],
    latched: Sequence[LatchedAxis],
    acq_time: float,
    counters: Sequence[tuple[Any, list[Any]]],
    line_time: float,
) -> AcquisitionChain:
    # A line's last points may take a while to be read (10 kHz of MCA spectra): the readout
    # of a line may take half its duration beyond the default.
    readout = 10.0 + 0.5 * line_time
    trigger = LatchingTriggerMaster(
        source, trains, count_time=acq_time, latched=latched, readout_timeout=readout
    )
    chain = AcquisitionChain(readout_timeout=readout)
    if lines:
        motion = ContinuousMotionMaster(lines, latched=[a.axis.name for a in latched])
        chain.add(motion, trigger)
    for controller, members in counters:
        chain.add(
            trigger,
            AcquirableSlave(
                controller,
                counters=[c.name for c in members],
                trigger_type=TriggerType.HARDWARE,
            ),
        )
    return chain


async def _run(
    command_name: str,
    chain: AcquisitionChain,
    title: str,
    npoints: int,
    motor_ranges: list[dict[str, Any]],
    info: dict[str, Any],
    kw: dict[str, Any],
    *,
    pausable: bool,
) -> Scan:
    # make_scan reads the common keywords; those a continuous scan refuses (name, scan_type,
    # pause_conditions, return_scan...) are absent from kw, so their defaults hold.
    scan_info = {**(kw.get("scan_info") or {}), **info}
    scan = make_scan(
        chain,
        command_name,
        title,
        npoints,
        motor_ranges,
        {**kw, "scan_info": scan_info},
        scan_class=ContinuousScan,
        pausable=pausable,
    )
    return await maybe_run(scan, kw)


def _range(motor: ScanAxis, first: float, step: float, npoints: int) -> dict[str, Any]:
    return {
        "name": motor.name,
        "start": first,
        "stop": first + step * (npoints - 1),
        "unit": getattr(motor, "unit", None),
    }


async def _line_scan(
    command_name: str,
    motions: Sequence[tuple[Any, Any, Any]],
    npoints: Any,
    acq_time: Any,
    counters: Sequence[Any],
    latency_time: Any,
    scan_mode: Any,
    kw: dict[str, Any],
) -> Scan:
    """fscan and f2scan: one line, every motor from its start by its step, together."""
    check_continuous_keywords(kw, command_name)
    mode = scan_mode_argument(scan_mode, command_name)
    acq, latency = time_arguments(acq_time, latency_time, command_name)
    period = acq + latency
    n = int_argument(npoints, "npoints", command_name, 1)
    motors = scan_axes([m for m, _, _ in motions], command_name)
    firsts = [
        number_argument(s, f"start of {m.name}", command_name)
        for m, _, s, _ in _with(motors, motions)
    ]
    steps = [step_argument(d, m, command_name) for m, _, _, d in _with(motors, motions)]
    runs = [
        _Run(command_name, motor, first, step, n, period)
        for motor, first, step in zip(motors, firsts, steps, strict=True)
    ]
    ramp = max(run.ramp_time for run in runs)
    line = [run.line(run.first, run.step, ramp, period) for run in runs]
    for motion in line:
        _check_run(motion, command_name)
    counter_groups = hardware_counters(counters, command_name)
    source = trigger_source(kw, motors, command_name)
    latched = _latched(source, motors)
    train = _train(mode, latched[0], firsts[0], steps[0], n, period, command_name)
    chain = _chain([line], source, [train], latched, acq, counter_groups, n * period + 2 * ramp)
    title_args: list[Any] = []
    for motor, first, step in zip(motors, firsts, steps, strict=True):
        title_args += [motor, first, step]
    info = _info(mode, acq, latency, n, runs, source, latched)
    ranges = [_range(*args, n) for args in zip(motors, firsts, steps, strict=True)]
    title = scan_title(command_name, *title_args, n, acq)
    return await _run(command_name, chain, title, n, ranges, info, kw, pausable=False)


def _with(motors: Sequence[ScanAxis], motions: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Each checked motor with the (motor, start, step) it was given."""
    return [(motor, *motion) for motor, motion in zip(motors, motions, strict=True)]


def _info(
    mode: str,
    acq: float,
    latency: float,
    npoints: int,
    runs: Sequence[_Run],
    source: LatchingTriggerSource,
    latched: Sequence[LatchedAxis],
) -> dict[str, Any]:
    """What the scan document records of a continuous scan (``scan_info["fscan"]``)."""
    return {
        "fscan": {
            "scan_mode": mode,
            "acq_time": acq,
            "latency_time": latency,
            "period": acq + latency,
            "npoints": npoints,
            "velocity": {run.motor.name: run.velocity for run in runs},
            "trigger": source.name,
            "latched": [a.axis.name for a in latched],
        }
    }


# ---------------------------------------------------------------------------- commands


@command
async def fscan(
    motor: Any,
    start: float,
    step_size: float,
    npoints: int,
    acq_time: float,
    *counters: Any,
    latency_time: float = 0.0,
    scan_mode: str = "TIME",
    **kw: Any,
) -> Scan:
    """``npoints`` points of ``motor`` from ``start`` every ``step_size``, moving at constant
    velocity ``step_size / (acq_time + latency_time)``; each point counts ``acq_time``."""
    motions = [(motor, start, step_size)]
    return await _line_scan(
        "fscan", motions, npoints, acq_time, counters, latency_time, scan_mode, kw
    )


@command
async def f2scan(
    motor: Any,
    start: float,
    step_size: float,
    motor2: Any,
    start2: float,
    step_size2: float,
    npoints: int,
    acq_time: float,
    *counters: Any,
    latency_time: float = 0.0,
    scan_mode: str = "TIME",
    **kw: Any,
) -> Scan:
    """Two motors at constant velocity together, each from its start by its step per point;
    ``motor``'s encoder times the pulses."""
    motions = [(motor, start, step_size), (motor2, start2, step_size2)]
    return await _line_scan(
        "f2scan", motions, npoints, acq_time, counters, latency_time, scan_mode, kw
    )


@command
async def fscan2d(
    slow_motor: Any,
    slow_start: float,
    slow_step_size: float,
    slow_npoints: int,
    fast_motor: Any,
    fast_start: float,
    fast_step_size: float,
    fast_npoints: int,
    acq_time: float,
    *counters: Any,
    zigzag: bool = False,
    latency_time: float = 0.0,
    scan_mode: str = "TIME",
    **kw: Any,
) -> Scan:
    """A grid: one continuous line of ``fast_motor`` per position of ``slow_motor`` (stepped
    between lines); ``zigzag`` runs every other line backwards. Pauses between lines."""
    name = "fscan2d"
    check_continuous_keywords(kw, name)
    mode = scan_mode_argument(scan_mode, name)
    acq, latency = time_arguments(acq_time, latency_time, name)
    period = acq + latency
    slow, fast = scan_axes([slow_motor, fast_motor], name)
    slow_first = number_argument(slow_start, "slow_start", name)
    slow_step = number_argument(slow_step_size, "slow_step_size", name)
    slow_n = int_argument(slow_npoints, "slow_npoints", name, 1)
    fast_first = number_argument(fast_start, "fast_start", name)
    fast_step = step_argument(fast_step_size, fast, name)
    fast_n = int_argument(fast_npoints, "fast_npoints", name, 1)
    run = _Run(name, fast, fast_first, fast_step, fast_n, period)
    rows = slow_first + slow_step * np.arange(slow_n)
    for row, position in enumerate(rows):
        try:
            slow.check_limits(float(position))
        except Exception as exc:
            raise ScanArgumentError(
                f"{name}: line {row + 1} puts {slow.name} at {position:g}, outside its limits "
                f"({exc}); nothing moved"
            ) from None
    backwards_first = fast_first + fast_step * (fast_n - 1)
    lines: list[list[LineMotion]] = []
    starts: list[tuple[float, float]] = []
    for row, position in enumerate(rows):
        backwards = zigzag and row % 2 == 1
        first, step = (backwards_first, -fast_step) if backwards else (fast_first, fast_step)
        fast_line = run.line(first, step, run.ramp_time, period)
        if row < 2:
            _check_run(fast_line, name)
        still = LineMotion(slow, float(position), float(position), 0.0, np.full(fast_n, position))
        lines.append([fast_line, still])
        starts.append((first, step))
    counter_groups = hardware_counters(counters, name)
    source = trigger_source(kw, [fast], name)
    latched = _latched(source, [fast, slow])
    trains = [_train(mode, latched[0], f, d, fast_n, period, name) for f, d in starts]
    line_time = fast_n * period + 2 * run.ramp_time
    chain = _chain(lines, source, trains, latched, acq, counter_groups, line_time)
    info = _info(mode, acq, latency, slow_n * fast_n, [run], source, latched)
    info["mesh"] = {"shape": [slow_n, fast_n], "backnforth": bool(zigzag)}
    ranges = [
        _range(fast, fast_first, fast_step, fast_n),
        _range(slow, slow_first, slow_step, slow_n),
    ]
    title = scan_title(
        name, slow, slow_first, slow_step, slow_n, fast, fast_first, fast_step, fast_n, acq
    )
    npoints = slow_n * fast_n
    return await _run(name, chain, title, npoints, ranges, info, kw, pausable=slow_n > 1)


@command
async def ftimescan(
    acq_time: float,
    npoints: int,
    *counters: Any,
    latency_time: float = 0.0,
    **kw: Any,
) -> Scan:
    """``npoints`` points of ``acq_time``, one every ``acq_time + latency_time`` seconds,
    timed by the trigger box (no motion)."""
    name = "ftimescan"
    check_continuous_keywords(kw, name)
    acq, latency = time_arguments(acq_time, latency_time, name)
    period = acq + latency
    n = int_argument(npoints, "npoints", name, 1)
    counter_groups = hardware_counters(counters, name)
    source = trigger_source(kw, [], name)
    train = PulseTrain(n, period / 2, period=period)
    chain = _chain([], source, [train], [], acq, counter_groups, n * period)
    info = _info("TIME", acq, latency, n, [], source, [])
    title = scan_title(name, acq, n)
    return await _run(name, chain, title, n, [], info, kw, pausable=False)


CONTINUOUS_COMMANDS = {f.__name__: f for f in (fscan, f2scan, fscan2d, ftimescan)}
