"""How a step scan is made from its checked arguments: the positions of its motors (a line
of ``n`` motors together, a mesh, given positions), its chain (:func:`build_chain`), its
:class:`~blissng.scans.Scan`, and its run (unless ``run=False``). The commands of
``_commands`` call these with BLISS's signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import numpy as np

from blissng.acquisition import (
    AcquirableSlave,
    AcquisitionChain,
    MotorStepMaster,
    SoftwareTimerMaster,
)
from blissng.devices import LimitError

from ._arguments import (
    ScanArgumentError,
    check_distinct,
    check_keywords,
    count_time_argument,
    int_argument,
    motor_argument,
    number_argument,
    scan_counters,
    scan_title,
)
from ._context import current_context
from ._counter_selection import group_by_controller
from ._scan import Scan


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


def _scan_info(kw: dict[str, Any]) -> dict[str, Any]:
    """``scan_info`` with what the BLISS keywords record: ``type``, ``scan_params``,
    ``save_images``."""
    info = dict(kw.get("scan_info") or {})
    if kw.get("scan_type") is not None:
        info["type"] = str(kw["scan_type"])
    if kw.get("scan_params") is not None:
        info["scan_params"] = kw["scan_params"]
    if kw.get("save_images") is not None:
        info["save_images"] = bool(kw["save_images"])
    return info


def make_scan(
    chain: AcquisitionChain,
    name: str,
    title: str,
    npoints: int,
    motor_ranges: Sequence[dict[str, Any]],
    kw: dict[str, Any],
    *,
    save_default: bool = True,
    return_to: Sequence[tuple[Any, float]] = (),
    scan_class: type[Scan] = Scan,
    **extra: Any,
) -> Scan:
    """The :class:`~blissng.scans.Scan` of ``chain`` as the common keywords ask (its pause
    conditions checked against what it counts); ``scan_class(..., **extra)`` for a kind of
    scan of its own (``ContinuousScan``)."""
    _check_conditions(chain, kw.get("pause_conditions") or ())
    return scan_class(
        chain,
        name=str(kw.get("name") or name),
        title=kw.get("title") or title,
        npoints=npoints,
        motors=motor_ranges,
        save=kw.get("save", save_default),
        scan_info=_scan_info(kw),
        return_to=return_to,
        workflow=kw.get("workflow"),
        pause_conditions=kw.get("pause_conditions") or (),
        display=kw.get("display", True),
        **extra,
    )


async def maybe_run(scan: Scan, kw: dict[str, Any]) -> Any:
    """Run the scan unless ``run=False``; the scan, or None with ``return_scan=False``."""
    if kw.get("run", True):
        await scan.run.aio(scan)  # type: ignore[attr-defined]
    return scan if kw.get("return_scan", True) else None


async def current_positions(motors: Sequence[Any]) -> list[float]:
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


def check_trajectory_limits(motions: Sequence[tuple[Any, Any]], command_name: str) -> None:
    """Refuse a scan that would take a motor outside its software limits, before anything
    moves: BLISS checks the whole trajectory first, where a night's scan would otherwise run
    its first points, then fail half-way with a partial file."""
    for motor, positions in motions:
        check = getattr(motor, "check_limits", None)
        values = np.asarray(positions, dtype=float)
        if check is None or values.size == 0:
            continue
        for value in (values.min(), values.max()):
            try:
                check(float(value))
            except LimitError as exc:
                raise LimitError(
                    motor.name,
                    f"{command_name} refused: it would take {motor.name} to {value:g}, "
                    f"outside its software limits {_limits_text(motor)}; nothing moved",
                ) from exc


def _limits_text(motor: Any) -> str:
    low, high = getattr(motor, "limits", (None, None))
    return f"[{low:g}, {high:g}]" if low is not None and high is not None else "(see wm())"


async def _make_and_run(
    command_name: str,
    motions: Sequence[tuple[Any, np.ndarray]],
    count_time: float,
    counters: Sequence[Any],
    kw: dict[str, Any],
    title: str,
    motor_ranges: Sequence[dict[str, Any]],
    return_to: Sequence[tuple[Any, float]] = (),
) -> Scan:
    check_keywords(kw, command_name)
    check_distinct([m for m, _ in motions], command_name)
    check_trajectory_limits(motions, command_name)
    counter_list = scan_counters(counters, command_name)
    npoints = len(motions[0][1])
    chain = build_chain(
        counter_list,
        count_time,
        npoints,
        motions,
        sleep_time=kw.get("sleep_time", 0.0),
        stab_time=kw.get("stab_time", 0.0),
    )
    scan = make_scan(chain, command_name, title, npoints, motor_ranges, kw, return_to=return_to)
    return await maybe_run(scan, kw)


def _ranges(motors: Sequence[Any], starts: Sequence[float], stops: Sequence[float]) -> list[dict]:
    return [
        {"name": m.name, "start": s, "stop": e, "unit": getattr(m, "unit", None)}
        for m, s, e in zip(motors, starts, stops, strict=True)
    ]


def _line(start: float, stop: float, intervals: int) -> np.ndarray:
    return np.linspace(start, stop, intervals + 1)


async def _absolute(
    motors: Sequence[Any],
    starts: Sequence[float],
    stops: Sequence[float],
    relative: bool,
    kw: dict[str, Any],
) -> tuple[list[float], list[float], Sequence[tuple[Any, float]]]:
    """The absolute starts and stops (``relative``: from where the motors are), and where the
    motors return at the end (``restore_motor_positions``, by default ``relative``)."""
    restore = bool(kw.get("restore_motor_positions", relative))
    here = await current_positions(motors) if relative or restore else [0.0] * len(motors)
    origins = here if relative else [0.0] * len(motors)
    abs_starts = [o + s for o, s in zip(origins, starts, strict=True)]
    abs_stops = [o + e for o, e in zip(origins, stops, strict=True)]
    return abs_starts, abs_stops, list(zip(motors, here, strict=True)) if restore else ()


async def stepped_scan(
    command_name: str,
    motions: Sequence[tuple[Any, Any, Any]],
    intervals: Any,
    count_time: Any,
    counters: Sequence[Any],
    kw: dict[str, Any],
    *,
    relative: bool = False,
) -> Scan:
    """Motors stepped together from their start to their stop in ``intervals`` (``relative``:
    from where they are, and back there at the end)."""
    motors = [motor_argument(m, command_name) for m, _, _ in motions]
    check_distinct(motors, command_name)
    starts = [number_argument(s, f"start of {m.name}", command_name) for m, s, _ in motions]
    stops = [number_argument(e, f"stop of {m.name}", command_name) for m, _, e in motions]
    intervals = int_argument(intervals, "intervals", command_name, 1)
    count_time = count_time_argument(count_time, command_name)
    abs_starts, abs_stops, return_to = await _absolute(motors, starts, stops, relative, kw)
    arrays = [_line(s, e, intervals) for s, e in zip(abs_starts, abs_stops, strict=True)]
    title_args: list[Any] = []
    for m, s, e in zip(motors, starts, stops, strict=True):
        title_args += [m, s, e]
    title = scan_title(command_name, *title_args, intervals, count_time)
    return await _make_and_run(
        command_name,
        list(zip(motors, arrays, strict=True)),
        count_time,
        counters,
        kw,
        title,
        _ranges(motors, abs_starts, abs_stops),
        return_to=return_to,
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


async def mesh_scan(
    command_name: str,
    args: tuple[Any, ...],
    counters: Sequence[Any],
    kw: dict[str, Any],
    backnforth: bool,
    relative: bool,
) -> Scan:
    """A grid of two motors; ``args`` are ``amesh``'s positional arguments."""
    m1, s1, e1, i1, m2, s2, e2, i2, count_time = args
    motors = [motor_argument(m1, command_name), motor_argument(m2, command_name)]
    check_distinct(motors, command_name)
    starts = [
        number_argument(s1, "start1", command_name),
        number_argument(s2, "start2", command_name),
    ]
    stops = [number_argument(e1, "stop1", command_name), number_argument(e2, "stop2", command_name)]
    i1 = int_argument(i1, "intervals1", command_name, 1)
    i2 = int_argument(i2, "intervals2", command_name, 1)
    count_time = count_time_argument(count_time, command_name)
    a_starts, a_stops, return_to = await _absolute(motors, starts, stops, relative, kw)
    fast, slow = _mesh_positions(
        a_starts[0], a_stops[0], i1, a_starts[1], a_stops[1], i2, backnforth
    )
    title = scan_title(command_name, m1, s1, e1, i1, m2, s2, e2, i2, count_time)
    kw.setdefault("scan_info", {})
    kw["scan_info"] = {
        **(kw["scan_info"] or {}),
        "mesh": {"shape": [i2 + 1, i1 + 1], "backnforth": backnforth},
    }
    return await _make_and_run(
        command_name,
        [(motors[0], fast), (motors[1], slow)],
        count_time,
        counters,
        kw,
        title,
        _ranges(motors, a_starts, a_stops),
        return_to=return_to,
    )


async def lookup_scan(
    command_name: str,
    pairs: list[tuple[Any, np.ndarray]],
    count_time: Any,
    counters: Sequence[Any],
    kw: dict[str, Any],
) -> Scan:
    """Motors through given positions, the same number for each."""
    if not pairs:
        raise ScanArgumentError(f"{command_name}: no motor given")
    motors = [motor_argument(m, command_name) for m, _ in pairs]
    lengths = {len(p) for _, p in pairs}
    if len(lengths) != 1 or 0 in lengths:
        detail = ", ".join(f"{m.name}: {len(p)}" for m, p in pairs)
        raise ScanArgumentError(
            f"{command_name}: every motor needs the same, non-zero number of positions ({detail})"
        )
    if not all(np.isfinite(p).all() for _, p in pairs):
        raise ScanArgumentError(f"{command_name}: positions must be finite numbers")
    count_time = count_time_argument(count_time, command_name)
    ranges = [
        {
            "name": m.name,
            "start": float(p[0]),
            "stop": float(p[-1]),
            "unit": getattr(m, "unit", None),
        }
        for m, p in pairs
    ]
    title = scan_title(command_name, *motors, len(pairs[0][1]), count_time)
    restore = kw.get("restore_motor_positions", False)
    here = await current_positions(motors) if restore else []
    return_to = list(zip(motors, here, strict=True)) if restore else []
    return await _make_and_run(
        command_name, pairs, count_time, counters, kw, title, ranges, return_to=return_to
    )
