"""The scan commands, with BLISS's names and signatures (``intervals`` -> ``intervals + 1``
points).

Every command is one coroutine function made callable both ways by
:func:`blissng.scans.bridge.command`: ``await ascan(...)`` in async code, ``ascan(...)``
(blocking) in a console's worker thread. Each returns the :class:`~blissng.scans.scan.Scan`
(not run with ``run=False``).

Common keywords: ``sleep_time`` (between points), ``stab_time`` (after each move), ``title``,
``save`` (default True, except ``ct``), ``run`` (default True), ``scan_info`` (free metadata),
``workflow`` (passed untouched to the scan hooks), ``pause_conditions`` (a list of
``blissng.acquisition.PauseCondition``), ``display`` (the live table, default True).

Counters may be counters, controllers or measurement groups; with none, the context's active
measurement group is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import anyio
import numpy as np

from blissng.acquisition import (
    AcquirableSlave,
    AcquisitionChain,
    HardwareTriggerMaster,
    MotorStepMaster,
    SoftwareTimerMaster,
    TriggerType,
)

from .bridge import command
from .context import current_context
from .counters import expand_counters, group_by_controller
from .scan import Scan


class ScanArgumentError(ValueError):
    """A scan command was given arguments it cannot use; the message says which."""


# ---------------------------------------------------------------------------- helpers


def _number(value: Any, what: str, command_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScanArgumentError(f"{command_name}: {what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ScanArgumentError(f"{command_name}: {what} must be finite, got {value!r}")
    return number


def _count_time(value: Any, command_name: str) -> float:
    number = _number(value, "count_time", command_name)
    if number < 0:
        raise ScanArgumentError(f"{command_name}: count_time must be >= 0, got {value!r}")
    return number


def _int(value: Any, what: str, command_name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ScanArgumentError(f"{command_name}: {what} must be an integer, got {value!r}")
    if value < minimum:
        raise ScanArgumentError(f"{command_name}: {what} must be >= {minimum}, got {value}")
    return int(value)


def _motor(value: Any, command_name: str) -> Any:
    if not (hasattr(value, "move") and hasattr(value, "name") and hasattr(value, "position")):
        raise ScanArgumentError(f"{command_name}: {value!r} is not a motor")
    return value


def _distinct(motors: Sequence[Any], command_name: str) -> None:
    names = [m.name for m in motors]
    if len(set(names)) != len(names):
        raise ScanArgumentError(f"{command_name}: a motor is given twice ({', '.join(names)})")


def _counters(items: Sequence[Any], command_name: str) -> list[Any]:
    if items:
        counters = expand_counters(items)
    else:
        mg = current_context().active_mg()
        if mg is None:
            raise ScanArgumentError(
                f"{command_name}: no counters given and no active measurement group; "
                "pass counters or set one (set_active_mg(MG1))"
            )
        counters = list(mg.counters)
        if not counters:
            raise ScanArgumentError(
                f"{command_name}: the active measurement group {mg.name} has every counter "
                f"disabled; enable some ({mg.name}.enable('*'))"
            )
    if not counters:
        raise ScanArgumentError(f"{command_name}: no counter to count")
    return counters


def _fmt(value: Any) -> str:
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _title(command_name: str, *args: Any) -> str:
    return " ".join([command_name, *(_fmt(a) for a in args)])


def build_chain(
    counters: Sequence[Any],
    count_time: float,
    npoints: int,
    motions: Sequence[tuple[Any, Any]] = (),
    *,
    sleep_time: float = 0.0,
    stab_time: float = 0.0,
) -> AcquisitionChain:
    """The default chain of a step scan: [motor master ->] software timer -> one slave per
    counter controller (its selected counters read together)."""
    chain = AcquisitionChain()
    timer = SoftwareTimerMaster(count_time, npoints, sleep_time=sleep_time)
    if motions:
        chain.add(MotorStepMaster(list(motions), stab_time=stab_time), timer)
    for controller, members in group_by_controller(counters):
        chain.add(timer, AcquirableSlave(controller, counters=[c.name for c in members]))
    return chain


def _check_conditions(chain: AcquisitionChain, conditions: Sequence[Any]) -> None:
    counted = {id(getattr(node, "device", None)) for node in chain.nodes}
    for condition in conditions:
        controller = getattr(condition, "controller", None)
        if controller is not None and id(controller) in counted:
            raise ScanArgumentError(
                f"pause condition {condition.name!r} reads {controller.name}, which this scan "
                "counts too: use a counter of another controller (a beam monitor)"
            )


def _make_scan(
    chain: AcquisitionChain,
    name: str,
    title: str,
    npoints: int,
    motor_ranges: Sequence[dict[str, Any]],
    kw: dict[str, Any],
    *,
    save_default: bool = True,
    return_to: Sequence[tuple[Any, float]] = (),
) -> Scan:
    _check_conditions(chain, kw.get("pause_conditions") or ())
    return Scan(
        chain,
        name=name,
        title=kw.get("title") or title,
        npoints=npoints,
        motors=motor_ranges,
        save=kw.get("save", save_default),
        scan_info=kw.get("scan_info"),
        return_to=return_to,
        workflow=kw.get("workflow"),
        pause_conditions=kw.get("pause_conditions") or (),
        display=kw.get("display", True),
    )


_KEYWORDS = {
    "sleep_time",
    "stab_time",
    "title",
    "save",
    "run",
    "scan_info",
    "workflow",
    "pause_conditions",
    "display",
}


def _check_keywords(kw: dict[str, Any], command_name: str) -> None:
    unknown = set(kw) - _KEYWORDS
    if unknown:
        raise ScanArgumentError(
            f"{command_name}: unknown keyword(s) {', '.join(sorted(unknown))}; "
            f"accepted: {', '.join(sorted(_KEYWORDS))}"
        )
    for key in ("sleep_time", "stab_time"):
        if key in kw and _number(kw[key], key, command_name) < 0:
            raise ScanArgumentError(f"{command_name}: {key} must be >= 0")


async def _maybe_run(scan: Scan, kw: dict[str, Any]) -> Scan:
    if kw.get("run", True):
        await scan.run.aio(scan)  # type: ignore[attr-defined]
    return scan


async def _starts(motors: Sequence[Any]) -> list[float]:
    """Current positions of ``motors`` (read from the hardware, with a timeout each)."""
    timeout = current_context().snapshot_timeout
    positions = []
    for motor in motors:
        try:
            with anyio.fail_after(timeout):
                positions.append(float(await motor.read_position()))
        except TimeoutError:
            raise TimeoutError(
                f"{motor.name} did not report its position in {timeout:g} s"
            ) from None
    return positions


async def _step_scan(
    command_name: str,
    motions: Sequence[tuple[Any, np.ndarray]],
    count_time: float,
    counters: Sequence[Any],
    kw: dict[str, Any],
    title: str,
    motor_ranges: Sequence[dict[str, Any]],
    return_to: Sequence[tuple[Any, float]] = (),
) -> Scan:
    _check_keywords(kw, command_name)
    _distinct([m for m, _ in motions], command_name)
    counter_list = _counters(counters, command_name)
    npoints = len(motions[0][1])
    chain = build_chain(
        counter_list,
        count_time,
        npoints,
        motions,
        sleep_time=kw.get("sleep_time", 0.0),
        stab_time=kw.get("stab_time", 0.0),
    )
    scan = _make_scan(chain, command_name, title, npoints, motor_ranges, kw, return_to=return_to)
    return await _maybe_run(scan, kw)


def _ranges(motors: Sequence[Any], starts: Sequence[float], stops: Sequence[float]) -> list[dict]:
    return [
        {"name": m.name, "start": s, "stop": e, "unit": getattr(m, "unit", None)}
        for m, s, e in zip(motors, starts, stops, strict=True)
    ]


# ---------------------------------------------------------------------------- counting


def _leading_counter(count_time: Any, counters: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """``ct(diode)``: a counter given where the count time goes means 1 s on it."""
    if hasattr(count_time, "name") and not isinstance(count_time, (int, float)):
        return 1.0, (count_time, *counters)
    return count_time, counters


@command
async def ct(count_time: float = 1.0, *counters: Any, **kw: Any) -> Scan:
    """Count once for ``count_time`` s; not saved (use ``sct`` to save). ``ct(diode)``
    counts 1 s."""
    count_time, counters = _leading_counter(count_time, counters)
    count_time = _count_time(count_time, "ct")
    _check_keywords(kw, "ct")
    chain = build_chain(_counters(counters, "ct"), count_time, 1, sleep_time=0.0)
    scan = _make_scan(chain, "ct", _title("ct", count_time), 1, [], kw, save_default=False)
    return await _maybe_run(scan, kw)


@command
async def sct(count_time: float = 1.0, *counters: Any, **kw: Any) -> Scan:
    """Count once and save."""
    count_time, counters = _leading_counter(count_time, counters)
    count_time = _count_time(count_time, "sct")
    _check_keywords(kw, "sct")
    chain = build_chain(_counters(counters, "sct"), count_time, 1)
    scan = _make_scan(chain, "sct", _title("sct", count_time), 1, [], kw)
    return await _maybe_run(scan, kw)


@command
async def loopscan(npoints: int, count_time: float, *counters: Any, **kw: Any) -> Scan:
    """``npoints`` counts of ``count_time`` s, ``sleep_time`` apart."""
    npoints = _int(npoints, "npoints", "loopscan", 1)
    count_time = _count_time(count_time, "loopscan")
    _check_keywords(kw, "loopscan")
    chain = build_chain(
        _counters(counters, "loopscan"), count_time, npoints, sleep_time=kw.get("sleep_time", 0)
    )
    title = _title("loopscan", npoints, count_time)
    return await _maybe_run(_make_scan(chain, "loopscan", title, npoints, [], kw), kw)


@command
async def timescan(count_time: float, *counters: Any, npoints: int = 0, **kw: Any) -> Scan:
    """Count every ``count_time`` s; ``npoints`` 0 runs until stopped (Ctrl-C, ``abort()``)."""
    npoints = _int(npoints, "npoints", "timescan", 0)
    count_time = _count_time(count_time, "timescan")
    _check_keywords(kw, "timescan")
    chain = build_chain(
        _counters(counters, "timescan"), count_time, npoints, sleep_time=kw.get("sleep_time", 0)
    )
    title = _title("timescan", count_time)
    return await _maybe_run(_make_scan(chain, "timescan", title, npoints, [], kw), kw)


# ---------------------------------------------------------------------------- step scans


def _line(start: float, stop: float, intervals: int) -> np.ndarray:
    return np.linspace(start, stop, intervals + 1)


@command
async def ascan(
    motor: Any,
    start: float,
    stop: float,
    intervals: int,
    count_time: float,
    *counters: Any,
    **kw: Any,
) -> Scan:
    """Step ``motor`` from ``start`` to ``stop`` in ``intervals`` (absolute positions)."""
    return await _nscan("ascan", [(motor, start, stop)], intervals, count_time, counters, kw)


@command
async def dscan(
    motor: Any,
    start: float,
    stop: float,
    intervals: int,
    count_time: float,
    *counters: Any,
    **kw: Any,
) -> Scan:
    """Like ``ascan`` relative to the current position; the motor returns there at the end."""
    return await _nscan(
        "dscan", [(motor, start, stop)], intervals, count_time, counters, kw, relative=True
    )


@command
async def a2scan(
    motor1: Any,
    start1: float,
    stop1: float,
    motor2: Any,
    start2: float,
    stop2: float,
    intervals: int,
    count_time: float,
    *counters: Any,
    **kw: Any,
) -> Scan:
    """Two motors stepped together (absolute)."""
    motions = [(motor1, start1, stop1), (motor2, start2, stop2)]
    return await _nscan("a2scan", motions, intervals, count_time, counters, kw)


@command
async def d2scan(
    motor1: Any,
    start1: float,
    stop1: float,
    motor2: Any,
    start2: float,
    stop2: float,
    intervals: int,
    count_time: float,
    *counters: Any,
    **kw: Any,
) -> Scan:
    """Two motors stepped together, relative; both return to their start."""
    motions = [(motor1, start1, stop1), (motor2, start2, stop2)]
    return await _nscan("d2scan", motions, intervals, count_time, counters, kw, relative=True)


@command
async def anscan(
    motions: Sequence[tuple[Any, float, float]],
    intervals: int,
    count_time: float,
    *counters: Any,
    **kw: Any,
) -> Scan:
    """Any number of motors stepped together: ``anscan([(m1, 0, 1), (m2, 2, 4)], 10, 0.1)``."""
    return await _nscan(
        "anscan", _motion_list(motions, "anscan"), intervals, count_time, counters, kw
    )


@command
async def dnscan(
    motions: Sequence[tuple[Any, float, float]],
    intervals: int,
    count_time: float,
    *counters: Any,
    **kw: Any,
) -> Scan:
    """Relative ``anscan``; every motor returns to its start."""
    return await _nscan(
        "dnscan",
        _motion_list(motions, "dnscan"),
        intervals,
        count_time,
        counters,
        kw,
        relative=True,
    )


def _motion_list(motions: Any, command_name: str) -> list[tuple[Any, float, float]]:
    try:
        items = [tuple(m) for m in motions]
    except TypeError:
        items = []
    if not items or any(len(m) != 3 for m in items):
        raise ScanArgumentError(
            f"{command_name}: give a list of (motor, start, stop): "
            f"{command_name}([(m1, 0, 1), (m2, 0, 2)], 10, 0.1)"
        )
    return items


async def _nscan(
    command_name: str,
    motions: Sequence[tuple[Any, Any, Any]],
    intervals: Any,
    count_time: Any,
    counters: Sequence[Any],
    kw: dict[str, Any],
    *,
    relative: bool = False,
) -> Scan:
    motors = [_motor(m, command_name) for m, _, _ in motions]
    _distinct(motors, command_name)
    starts = [_number(s, f"start of {m.name}", command_name) for m, s, _ in motions]
    stops = [_number(e, f"stop of {m.name}", command_name) for m, _, e in motions]
    intervals = _int(intervals, "intervals", command_name, 1)
    count_time = _count_time(count_time, command_name)
    origins = await _starts(motors) if relative else [0.0] * len(motors)
    abs_starts = [o + s for o, s in zip(origins, starts, strict=True)]
    abs_stops = [o + e for o, e in zip(origins, stops, strict=True)]
    arrays = [_line(s, e, intervals) for s, e in zip(abs_starts, abs_stops, strict=True)]
    title_args: list[Any] = []
    for m, s, e in zip(motors, starts, stops, strict=True):
        title_args += [m, s, e]
    title = _title(command_name, *title_args, intervals, count_time)
    return await _step_scan(
        command_name,
        list(zip(motors, arrays, strict=True)),
        count_time,
        counters,
        kw,
        title,
        _ranges(motors, abs_starts, abs_stops),
        return_to=list(zip(motors, origins, strict=True)) if relative else (),
    )


def _mesh_positions(
    s1: float, e1: float, i1: int, s2: float, e2: float, i2: int, backnforth: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Motor 1 is the fast axis (inner loop), motor 2 the slow one."""
    fast = _line(s1, e1, i1)
    slow = _line(s2, e2, i2)
    rows = []
    for row in range(len(slow)):
        rows.append(fast[::-1] if backnforth and row % 2 else fast)
    return np.concatenate(rows), np.repeat(slow, len(fast))


async def _mesh(
    command_name: str,
    args: tuple[Any, ...],
    counters: Sequence[Any],
    kw: dict[str, Any],
    backnforth: bool,
    relative: bool,
) -> Scan:
    m1, s1, e1, i1, m2, s2, e2, i2, count_time = args
    motors = [_motor(m1, command_name), _motor(m2, command_name)]
    _distinct(motors, command_name)
    starts = [_number(s1, "start1", command_name), _number(s2, "start2", command_name)]
    stops = [_number(e1, "stop1", command_name), _number(e2, "stop2", command_name)]
    i1 = _int(i1, "intervals1", command_name, 1)
    i2 = _int(i2, "intervals2", command_name, 1)
    count_time = _count_time(count_time, command_name)
    origins = await _starts(motors) if relative else [0.0, 0.0]
    a_starts = [o + s for o, s in zip(origins, starts, strict=True)]
    a_stops = [o + e for o, e in zip(origins, stops, strict=True)]
    fast, slow = _mesh_positions(
        a_starts[0], a_stops[0], i1, a_starts[1], a_stops[1], i2, backnforth
    )
    title = _title(command_name, m1, s1, e1, i1, m2, s2, e2, i2, count_time)
    kw.setdefault("scan_info", {})
    kw["scan_info"] = {
        **(kw["scan_info"] or {}),
        "mesh": {"shape": [i2 + 1, i1 + 1], "backnforth": backnforth},
    }
    return await _step_scan(
        command_name,
        [(motors[0], fast), (motors[1], slow)],
        count_time,
        counters,
        kw,
        title,
        _ranges(motors, a_starts, a_stops),
        return_to=list(zip(motors, origins, strict=True)) if relative else (),
    )


@command
async def amesh(
    motor1: Any,
    start1: float,
    stop1: float,
    intervals1: int,
    motor2: Any,
    start2: float,
    stop2: float,
    intervals2: int,
    count_time: float,
    *counters: Any,
    backnforth: bool = False,
    **kw: Any,
) -> Scan:
    """A grid: ``motor1`` steps fast (inner), ``motor2`` slow; ``backnforth`` reverses the fast
    axis on every other line."""
    args = (motor1, start1, stop1, intervals1, motor2, start2, stop2, intervals2, count_time)
    return await _mesh("amesh", args, counters, kw, backnforth, relative=False)


@command
async def dmesh(
    motor1: Any,
    start1: float,
    stop1: float,
    intervals1: int,
    motor2: Any,
    start2: float,
    stop2: float,
    intervals2: int,
    count_time: float,
    *counters: Any,
    backnforth: bool = False,
    **kw: Any,
) -> Scan:
    """Relative ``amesh``; both motors return to their start."""
    args = (motor1, start1, stop1, intervals1, motor2, start2, stop2, intervals2, count_time)
    return await _mesh("dmesh", args, counters, kw, backnforth, relative=True)


@command
async def lookupscan(
    motor_positions: Sequence[tuple[Any, Sequence[float]]],
    count_time: float,
    *counters: Any,
    **kw: Any,
) -> Scan:
    """Motors through given positions: ``lookupscan([(m1, [0, 1, 5]), (m2, [2, 2, 3])], 0.1)``."""
    try:
        pairs = [(m, np.asarray(p, dtype=float).ravel()) for m, p in motor_positions]
    except (TypeError, ValueError):
        raise ScanArgumentError(
            "lookupscan: give a list of (motor, positions): lookupscan([(m1, [0, 1, 2])], 0.1)"
        ) from None
    return await _lookup("lookupscan", pairs, count_time, counters, kw)


@command
async def pointscan(
    motor: Any, positions: Sequence[float], count_time: float, *counters: Any, **kw: Any
) -> Scan:
    """One motor through given positions."""
    try:
        array = np.asarray(positions, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ScanArgumentError("pointscan: positions must be a list of numbers") from None
    return await _lookup("pointscan", [(motor, array)], count_time, counters, kw)


async def _lookup(
    command_name: str,
    pairs: list[tuple[Any, np.ndarray]],
    count_time: Any,
    counters: Sequence[Any],
    kw: dict[str, Any],
) -> Scan:
    if not pairs:
        raise ScanArgumentError(f"{command_name}: no motor given")
    motors = [_motor(m, command_name) for m, _ in pairs]
    lengths = {len(p) for _, p in pairs}
    if len(lengths) != 1 or 0 in lengths:
        detail = ", ".join(f"{m.name}: {len(p)}" for m, p in pairs)
        raise ScanArgumentError(
            f"{command_name}: every motor needs the same, non-zero number of positions ({detail})"
        )
    if not all(np.isfinite(p).all() for _, p in pairs):
        raise ScanArgumentError(f"{command_name}: positions must be finite numbers")
    count_time = _count_time(count_time, command_name)
    ranges = [
        {
            "name": m.name,
            "start": float(p[0]),
            "stop": float(p[-1]),
            "unit": getattr(m, "unit", None),
        }
        for m, p in pairs
    ]
    title = _title(command_name, *motors, len(pairs[0][1]), count_time)
    return await _step_scan(command_name, pairs, count_time, counters, kw, title, ranges)


# ---------------------------------------------------------------------------- hardware


@command
async def triggerscan(
    source: Any,
    npoints: int,
    period: float,
    *detectors: Any,
    width: float | None = None,
    count_time: float | None = None,
    frames_per_trigger: int = 1,
    **kw: Any,
) -> Scan:
    """Hardware-triggered acquisition: the trigger ``source`` (the trigger box) emits
    ``npoints`` pulses every ``period`` s; the ``detectors`` (armed first) count each pulse."""
    npoints = _int(npoints, "npoints", "triggerscan", 1)
    period = _number(period, "period", "triggerscan")
    _check_keywords(kw, "triggerscan")
    if not detectors:
        raise ScanArgumentError("triggerscan: give the detectors the trigger source drives")
    master = HardwareTriggerMaster(source, npoints, period, width=width, count_time=count_time)
    chain = AcquisitionChain()
    for controller, members in group_by_controller(expand_counters(detectors)):
        chain.add(
            master,
            AcquirableSlave(
                controller,
                counters=[c.name for c in members],
                trigger_type=TriggerType.HARDWARE,
                npoints=npoints,
                frames_per_trigger=frames_per_trigger,
            ),
        )
    title = _title("triggerscan", source, npoints, period)
    return await _maybe_run(_make_scan(chain, "triggerscan", title, npoints, [], kw), kw)


SCAN_COMMANDS = {
    f.__name__: f
    for f in (
        ct, sct, loopscan, timescan, ascan, dscan, a2scan, d2scan, anscan, dnscan, amesh,
        dmesh, lookupscan, pointscan, triggerscan,
    )
}  # fmt: skip
