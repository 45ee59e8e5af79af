"""The scan commands, with BLISS's names and signatures (``intervals`` -> ``intervals + 1``
points).

Every command is one coroutine function made callable both ways by
:func:`blissng.scans.command`: ``await ascan(...)`` in async code, ``ascan(...)``
(blocking) in a console's worker thread. Each returns the :class:`~blissng.scans.Scan`
(not run with ``run=False``).

Common keywords: ``sleep_time`` (between points), ``stab_time`` (after each move), ``title``,
``save`` (default True, except ``ct``), ``run`` (default True), ``scan_info`` (free metadata),
``workflow`` (passed untouched to the scan hooks), ``pause_conditions`` (a list of
``blissng.acquisition.PauseCondition``), ``display`` (the live table, default True); and the
ones BLISS scripts pass: ``name`` (the scan's name, default the command's), ``scan_type`` and
``scan_params`` (recorded in ``scan_info``), ``save_images`` (recorded: cameras always keep
their frames in their own files, scans carry references), ``return_scan`` (False: the
command returns None), ``restore_motor_positions`` (move the scanned motors back to where they
were at the end; default True for ``d*`` scans, False otherwise).

Counters may be counters, controllers or measurement groups; with none, the context's active
measurement group is used.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from blissng.acquisition import (
    AcquirableSlave,
    AcquisitionChain,
    HardwareTriggerMaster,
    TriggerType,
)

from ._alignment import goto_peak
from ._arguments import (
    ScanArgumentError,
    check_keywords,
    count_time_argument,
    int_argument,
    leading_counter,
    motion_list,
    number_argument,
    scan_counters,
    scan_title,
)
from ._bridge import command
from ._counter_selection import expand_counters, group_by_controller
from ._scan import Scan
from ._step_scan import build_chain, lookup_scan, make_scan, maybe_run, mesh_scan, stepped_scan

# ---------------------------------------------------------------------------- counting


@command
async def ct(count_time: float = 1.0, *counters: Any, **kw: Any) -> Scan:
    """Count once for ``count_time`` s; not saved (use ``sct`` to save). ``ct(diode)``
    counts 1 s."""
    count_time, counters = leading_counter(count_time, counters)
    count_time = count_time_argument(count_time, "ct")
    check_keywords(kw, "ct")
    chain = build_chain(scan_counters(counters, "ct"), count_time, 1, sleep_time=0.0)
    scan = make_scan(chain, "ct", scan_title("ct", count_time), 1, [], kw, save_default=False)
    return await maybe_run(scan, kw)


@command
async def sct(count_time: float = 1.0, *counters: Any, **kw: Any) -> Scan:
    """Count once and save."""
    count_time, counters = leading_counter(count_time, counters)
    count_time = count_time_argument(count_time, "sct")
    check_keywords(kw, "sct")
    chain = build_chain(scan_counters(counters, "sct"), count_time, 1)
    scan = make_scan(chain, "sct", scan_title("sct", count_time), 1, [], kw)
    return await maybe_run(scan, kw)


@command
async def loopscan(npoints: int, count_time: float, *counters: Any, **kw: Any) -> Scan:
    """``npoints`` counts of ``count_time`` s, ``sleep_time`` apart."""
    npoints = int_argument(npoints, "npoints", "loopscan", 1)
    count_time = count_time_argument(count_time, "loopscan")
    check_keywords(kw, "loopscan")
    chain = build_chain(
        scan_counters(counters, "loopscan"), count_time, npoints, sleep_time=kw.get("sleep_time", 0)
    )
    title = scan_title("loopscan", npoints, count_time)
    return await maybe_run(make_scan(chain, "loopscan", title, npoints, [], kw), kw)


@command
async def timescan(count_time: float, *counters: Any, npoints: int = 0, **kw: Any) -> Scan:
    """Count every ``count_time`` s; ``npoints`` 0 runs until stopped (Ctrl-C, ``abort()``)."""
    npoints = int_argument(npoints, "npoints", "timescan", 0)
    count_time = count_time_argument(count_time, "timescan")
    check_keywords(kw, "timescan")
    chain = build_chain(
        scan_counters(counters, "timescan"), count_time, npoints, sleep_time=kw.get("sleep_time", 0)
    )
    title = scan_title("timescan", count_time)
    return await maybe_run(make_scan(chain, "timescan", title, npoints, [], kw), kw)


# ---------------------------------------------------------------------------- step scans


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
    return await stepped_scan("ascan", [(motor, start, stop)], intervals, count_time, counters, kw)


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
    return await stepped_scan(
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
    return await stepped_scan("a2scan", motions, intervals, count_time, counters, kw)


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
    return await stepped_scan("d2scan", motions, intervals, count_time, counters, kw, relative=True)


def _n_motor_scan(n: int, relative: bool) -> Any:
    """``a3scan``...``a5scan`` (``relative``: ``d3scan``...): ``n`` motors stepped together,
    BLISS's signature ``(motor1, start1, stop1, ..., intervals, count_time, *counters)``."""
    name = f"{'d' if relative else 'a'}{n}scan"
    usage = ", ".join(f"m{i}, s{i}, e{i}" for i in range(1, n + 1))

    async def scan(*args: Any, **kw: Any) -> Scan:
        if len(args) < 3 * n + 2:
            raise ScanArgumentError(
                f"{name} takes {n} (motor, start, stop) then intervals and count_time: "
                f"{name}({usage}, intervals, count_time, *counters)"
            )
        motions = [(args[3 * i], args[3 * i + 1], args[3 * i + 2]) for i in range(n)]
        intervals, count_time = args[3 * n], args[3 * n + 1]
        return await stepped_scan(
            name, motions, intervals, count_time, args[3 * n + 2 :], kw, relative=relative
        )

    scan.__name__ = scan.__qualname__ = name
    scan.__doc__ = f"{n} motors stepped together" + (
        ", relative to where they are; all return there at the end." if relative else "."
    )
    parameter = inspect.Parameter
    params = [
        parameter(f"{field}{i}", parameter.POSITIONAL_OR_KEYWORD)
        for i in range(1, n + 1)
        for field in ("motor", "start", "stop")
    ]
    params += [
        parameter("intervals", parameter.POSITIONAL_OR_KEYWORD),
        parameter("count_time", parameter.POSITIONAL_OR_KEYWORD),
        parameter("counters", parameter.VAR_POSITIONAL),
        parameter("kw", parameter.VAR_KEYWORD),
    ]
    scan.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return command(scan)


a3scan = _n_motor_scan(3, relative=False)
d3scan = _n_motor_scan(3, relative=True)
a4scan = _n_motor_scan(4, relative=False)
d4scan = _n_motor_scan(4, relative=True)
a5scan = _n_motor_scan(5, relative=False)
d5scan = _n_motor_scan(5, relative=True)


@command
async def anscan(
    motions: Sequence[tuple[Any, float, float]],
    intervals: int,
    count_time: float,
    *counters: Any,
    **kw: Any,
) -> Scan:
    """Any number of motors stepped together: ``anscan([(m1, 0, 1), (m2, 2, 4)], 10, 0.1)``."""
    return await stepped_scan(
        "anscan", motion_list(motions, "anscan"), intervals, count_time, counters, kw
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
    return await stepped_scan(
        "dnscan",
        motion_list(motions, "dnscan"),
        intervals,
        count_time,
        counters,
        kw,
        relative=True,
    )


@command
async def lineup(
    motor: Any,
    start: float,
    stop: float,
    intervals: int,
    count_time: float,
    counter: Any,
    **kw: Any,
) -> Scan | None:
    """``dscan`` of ``motor`` counting ``counter``, then ``motor`` goes to the counter's peak
    (BLISS's lineup): ``lineup(m1, -1, 1, 20, 0.1, diode)``."""
    if counter is None or isinstance(counter, (int, float)):
        raise ScanArgumentError(
            "lineup: give the one counter to line up on: lineup(m1, -1, 1, 20, 0.1, diode)"
        )
    if kw.get("run") is False:
        raise ScanArgumentError("lineup: run=False makes no sense (it moves to the peak found)")
    return_scan = kw.pop("return_scan", True)
    kw.setdefault("name", "lineup")
    scan = await stepped_scan(
        "lineup", [(motor, start, stop)], intervals, count_time, [counter], kw, relative=True
    )
    await goto_peak.aio(counter, scan=scan)  # type: ignore[attr-defined]
    return scan if return_scan else None


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
    return await mesh_scan("amesh", args, counters, kw, backnforth, relative=False)


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
    return await mesh_scan("dmesh", args, counters, kw, backnforth, relative=True)


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
    return await lookup_scan("lookupscan", pairs, count_time, counters, kw)


@command
async def pointscan(
    motor: Any, positions: Sequence[float], count_time: float, *counters: Any, **kw: Any
) -> Scan:
    """One motor through given positions."""
    try:
        array = np.asarray(positions, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ScanArgumentError("pointscan: positions must be a list of numbers") from None
    return await lookup_scan("pointscan", [(motor, array)], count_time, counters, kw)


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
    npoints = int_argument(npoints, "npoints", "triggerscan", 1)
    period = number_argument(period, "period", "triggerscan")
    check_keywords(kw, "triggerscan")
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
    title = scan_title("triggerscan", source, npoints, period)
    return await maybe_run(make_scan(chain, "triggerscan", title, npoints, [], kw), kw)


SCAN_COMMANDS = {
    f.__name__: f
    for f in (
        ct, sct, loopscan, timescan, ascan, dscan, a2scan, d2scan, a3scan, d3scan, a4scan,
        d4scan, a5scan, d5scan, anscan, dnscan, amesh, dmesh, lookupscan, pointscan, lineup,
        triggerscan,
    )
}  # fmt: skip
