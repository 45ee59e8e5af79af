"""What a continuous scan is given, checked before anything moves: its keywords, its
``scan_mode``, ``acq_time`` and ``latency_time``, its motors (axes that can run at constant
velocity, each once) and their steps; and the devices it needs, found: the counters the trigger
box can trigger, and the trigger box wired to the first motor's encoder. Each refusal is a
:class:`~blissng.scans.ScanArgumentError` naming the command and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from blissng.devices import LatchingTriggerSource, ScanAxis, TriggerMode

from ._arguments import ScanArgumentError, check_keywords, number_argument
from ._context import current_context
from ._counter_selection import expand_counters, group_by_controller

SCAN_MODES = ("TIME", "POSITION")

# Besides latency_time and scan_mode (and zigzag): no sleep_time nor stab_time (the motion
# does not stop at points), no pause_conditions (a line cannot be repeated).
_KEYWORDS = {"title", "save", "run", "scan_info", "workflow", "display", "trigger"}


def check_continuous_keywords(kw: dict[str, Any], command_name: str) -> None:
    """Refuse a keyword a continuous scan does not take."""
    check_keywords(kw, command_name, _KEYWORDS)


def scan_mode_argument(value: Any, command_name: str) -> str:
    """``TIME`` or ``POSITION`` (a string in any case, or an enum of that name)."""
    mode = str(getattr(value, "name", value)).upper()
    if mode not in SCAN_MODES:
        raise ScanArgumentError(
            f"{command_name}: scan_mode must be {' or '.join(SCAN_MODES)}, got {value!r}"
        )
    return mode


def time_arguments(acq_time: Any, latency_time: Any, command_name: str) -> tuple[float, float]:
    """``acq_time`` (> 0) and ``latency_time`` (>= 0)."""
    acq = number_argument(acq_time, "acq_time", command_name)
    latency = number_argument(latency_time, "latency_time", command_name)
    if acq <= 0:
        raise ScanArgumentError(f"{command_name}: acq_time must be > 0, got {acq_time!r}")
    if latency < 0:
        raise ScanArgumentError(f"{command_name}: latency_time must be >= 0, got {latency_time!r}")
    return acq, latency


def _scan_axis(motor: Any, command_name: str) -> ScanAxis:
    if not isinstance(motor, ScanAxis):
        raise ScanArgumentError(
            f"{command_name}: {getattr(motor, 'name', motor)!r} cannot be driven at constant "
            "velocity: give a motor axis"
        )
    return motor


def hardware_counters(items: Sequence[Any], command_name: str) -> list[tuple[Any, list[Any]]]:
    """(controller, counters) of what the trigger box can trigger. Explicit counters that it
    cannot trigger are an error; those of the active measurement group are left out, said."""
    ctx = current_context()
    if items:
        counters, from_mg = expand_counters(items), False
    else:
        mg = ctx.active_mg()
        if mg is None:
            raise ScanArgumentError(
                f"{command_name}: no counters given and no active measurement group; "
                "pass counters (a scaler, an MCA, a camera) or set one (set_active_mg(MG1))"
            )
        counters, from_mg = list(mg.counters), True
    groups, skipped = [], []
    for controller, members in group_by_controller(counters):
        modes: frozenset[TriggerMode] = getattr(controller, "supported_trigger_modes", frozenset())
        if TriggerMode.HARDWARE in modes:
            groups.append((controller, members))
        else:
            skipped.append(f"{controller.name} ({', '.join(c.name for c in members)})")
    if skipped and not from_mg:
        raise ScanArgumentError(
            f"{command_name}: the trigger box cannot trigger {'; '.join(skipped)}: they count "
            "on software triggers only. Give counters of a scaler, an MCA or a camera"
        )
    if skipped:
        ctx.print(f"{command_name}: left out (not hardware-triggered): {'; '.join(skipped)}")
    if not groups:
        raise ScanArgumentError(
            f"{command_name}: no counter that the trigger box can trigger"
            + (" in the active measurement group" if from_mg else "")
            + "; give counters of a scaler, an MCA or a camera"
        )
    return groups


def trigger_source(
    kw: dict[str, Any], motors: Sequence[ScanAxis], command_name: str
) -> LatchingTriggerSource:
    """``trigger=`` or the session's trigger box wired to the first motor's encoder (for
    ``ftimescan``, without motors: the session's only trigger box)."""
    given = kw.get("trigger")
    if given is not None:
        if not isinstance(given, LatchingTriggerSource):
            raise ScanArgumentError(
                f"{command_name}: trigger={getattr(given, 'name', given)!r} is not a trigger box "
                "that follows encoders"
            )
        candidates = [given]
    else:
        objects = current_context().objects().values()
        candidates = [o for o in objects if isinstance(o, LatchingTriggerSource)]
        if motors:
            candidates = [o for o in candidates if o.input_of(motors[0].name) is not None]
        if len(candidates) > 1:
            names = ", ".join(sorted(c.name for c in candidates))
            raise ScanArgumentError(
                f"{command_name}: several trigger boxes could drive this scan ({names}); "
                "choose one with trigger="
            )
    if not candidates:
        what = f"has an encoder input wired to {motors[0].name}" if motors else "is configured"
        raise ScanArgumentError(
            f"{command_name}: no trigger box {what}; wire the motor's encoder in the trigger "
            f"box's configuration (inputs: {{{motors[0].name if motors else 'm1'}: 1}}) or "
            "pass trigger="
        )
    source = candidates[0]
    if motors and source.input_of(motors[0].name) is None:
        raise ScanArgumentError(
            f"{command_name}: {source.name} has no encoder input wired to {motors[0].name} "
            f"(its configuration's inputs); the first motor's encoder times the pulses"
        )
    return source


def scan_axes(motors: Sequence[Any], command_name: str) -> list[ScanAxis]:
    """The motors, each an axis that can run at constant velocity, none given twice."""
    axes = [_scan_axis(m, command_name) for m in motors]
    if len({a.name for a in axes}) != len(axes):
        raise ScanArgumentError(
            f"{command_name}: a motor is given twice ({', '.join(a.name for a in axes)})"
        )
    return axes


def step_argument(value: Any, motor: ScanAxis, command_name: str) -> float:
    """A motor's step per point: a number, not 0."""
    step = number_argument(value, f"step_size of {motor.name}", command_name)
    if step == 0:
        raise ScanArgumentError(f"{command_name}: the step_size of {motor.name} must not be 0")
    return step
