"""The motor commands users type: ``mv``, ``umv``, ``mvr``, ``umvr``, ``wa()``, ``wu()``,
``wm(*motors)``, and ``umvct(motor, position, *counters)`` (counters shown while it moves).

Built on the ``Movable`` protocol (``position``, ``read_position``, ``move(target, wait)``,
``wait_move``, ``stop``) and, when an axis has them, the richer ``Axis`` attributes (``dial``,
``offset``, ``sign``, ``limits``, ``unit``, ``check_limits``); axes move as a
``blissng.devices.Group`` (one start per controller). Several motors given to one
command move together: every target is validated first (nothing moves if one is refused),
then all start, then all are awaited. Cancelling a move (Ctrl-C) stops every motor it started,
in a shielded scope with a deadline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import anyio

from blissng.devices import AcquisitionParameters, Axis, Group
from blissng.errors import BlissngError

from ._bridge import command, prints_its_result
from ._context import ScanContext, current_context
from ._counter_selection import expand_counters, group_by_controller
from ._groups import first_error

STOP_DEADLINE = 5.0
UMV_REFRESH = 0.1


class MotorCommandError(BlissngError, ValueError):
    """Bad arguments to a motor command."""


def _pairs(args: Sequence[Any], command_name: str) -> list[tuple[Any, float]]:
    if not args or len(args) % 2:
        raise MotorCommandError(
            f"{command_name}() takes motor, position pairs: {command_name}(m1, 1.0, m2, 2.5)"
        )
    pairs: list[tuple[Any, float]] = []
    for motor, target in zip(args[::2], args[1::2], strict=True):
        if not hasattr(motor, "move") or not hasattr(motor, "name"):
            raise MotorCommandError(f"{command_name}(): {motor!r} is not a motor")
        if isinstance(target, bool) or not isinstance(target, (int, float)):
            raise MotorCommandError(
                f"{command_name}(): the position for {motor.name} must be a number, got {target!r}"
            )
        if not math.isfinite(float(target)):
            raise MotorCommandError(f"{command_name}(): position {target} for {motor.name}")
        pairs.append((motor, float(target)))
    names = [m.name for m, _ in pairs]
    if len(set(names)) != len(names):
        raise MotorCommandError(f"{command_name}(): a motor is given twice ({', '.join(names)})")
    return pairs


async def stop_motors(motors: Sequence[Any]) -> None:
    """Stop ``motors`` concurrently, shielded, with a deadline (cleanup after an abort)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_DEADLINE):
        async with anyio.create_task_group() as tg:
            for motor in motors:
                tg.start_soon(_stop_quietly, motor)


async def _stop_quietly(motor: Any) -> None:
    try:
        await motor.stop()
    except Exception as exc:  # one failing stop must not prevent the others
        current_context().print(f"WARNING: could not stop {motor.name}: {exc}")


async def move_together(
    pairs: Sequence[tuple[Any, float]], *, context: ScanContext | None = None
) -> None:
    """Check every target, lock the motors (through the lock manager of ``context``, default
    the current one), start all moves, wait for all; stop all if cancelled or failed."""
    for motor, target in pairs:
        check = getattr(motor, "check_limits", None)
        if check is not None:
            check(target)
    ctx = context if context is not None else current_context()
    async with ctx.lock_devices(*(motor.name for motor, _ in pairs)):
        await _move_locked(pairs)


async def _move_locked(pairs: Sequence[tuple[Any, float]]) -> None:
    started: list[Any] = []
    try:
        if len(pairs) > 1 and all(isinstance(m, Axis) for m, _ in pairs):
            started = [m for m, _ in pairs]
            await Group(*started).move(dict(pairs))
            return
        for motor, target in pairs:
            started.append(motor)
            await motor.move(target, wait=False)
        async with anyio.create_task_group() as tg:
            for motor in started:
                tg.start_soon(motor.wait_move)
    except BaseException:
        await stop_motors(started)
        raise


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@command
async def mv(*args: Any) -> None:
    """``mv(m1, 1.0, m2, 2.0)``: move motors to absolute positions, wait, print nothing."""
    await move_together(_pairs(args, "mv"))


@command
async def mvr(*args: Any) -> None:
    """``mvr(m1, 0.5)``: move motors by relative amounts."""
    pairs = _pairs(args, "mvr")
    await move_together([(m, m.position + delta) for m, delta in pairs])


async def move_and_show(pairs: Sequence[tuple[Any, float]]) -> None:
    """Move the motors together, showing their positions as they go (``umv``, ``goto_cen``)."""
    ctx = current_context()
    motors = [m for m, _ in pairs]
    header = "  ".join(f"{m.name:>12}" for m in motors)
    ctx.print(header)

    def line() -> str:
        return "  ".join(f"{_fmt(m.position):>12}" for m in motors)

    done = anyio.Event()

    async def show() -> None:
        while not done.is_set():
            with anyio.move_on_after(UMV_REFRESH):
                await done.wait()
            if ctx.output is not None:
                ctx.output.write("\r" + line())
                ctx.output.flush()

    try:  # the move's own error, not "unhandled errors in a TaskGroup" (a device gone)
        async with anyio.create_task_group() as tg:
            tg.start_soon(show)
            try:
                await move_together(pairs)
            finally:
                done.set()
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    for motor in motors:
        read = getattr(motor, "read_position", None)
        if read is not None:
            with anyio.move_on_after(2.0):
                await read()
    ctx.print("\r" + line())


@command
async def umv(*args: Any) -> None:
    """``umv(m1, 1.0)``: like ``mv``, printing positions while the motors move."""
    await move_and_show(_pairs(args, "umv"))


@command
async def umvr(*args: Any) -> None:
    """``umvr(m1, 0.5)``: relative ``umv``."""
    pairs = _pairs(args, "umvr")
    await move_and_show([(m, m.position + delta) for m, delta in pairs])


async def read_positions(
    motors: Sequence[Any], timeout: float = 2.0
) -> dict[str, float | Exception]:
    """Every motor's position. Controllers are read concurrently, the motors of one controller
    one after the other within one ``timeout`` (its connection serialises them anyway); a
    controller that does not answer in time (or fails) gives its motors an error instead, so
    one dead controller never hangs the others."""
    results: dict[str, float | Exception] = {}
    by_controller: dict[int, list[Any]] = {}
    for motor in motors:
        controller = getattr(motor, "controller", None)
        key = id(controller) if controller is not None else id(motor)
        by_controller.setdefault(key, []).append(motor)

    async def one_controller(group: list[Any]) -> None:
        try:
            with anyio.fail_after(timeout):
                for motor in group:
                    try:
                        results[motor.name] = float(await motor.read_position())
                    except Exception as exc:
                        results[motor.name] = exc
        except TimeoutError:
            controller = getattr(group[0], "controller", None)
            who = f"controller {controller.name}" if controller is not None else group[0].name
            for motor in group:
                results.setdefault(
                    motor.name, TimeoutError(f"{who} did not answer in {timeout:g} s")
                )

    async with anyio.create_task_group() as tg:
        for group in by_controller.values():
            tg.start_soon(one_controller, group)
    return {m.name: results[m.name] for m in motors}


MAX_COLUMNS = 9  # motors per table in wa()/wu(), as BLISS shows them


def _label(motor: Any) -> str:
    unit = getattr(motor, "unit", None)
    return f"{motor.name}[{unit}]" if unit else motor.name


def _dial_of(motor: Any, position: float | Exception) -> float | Exception:
    to_dial = getattr(motor, "user_to_dial", None)
    if isinstance(position, Exception) or to_dial is None:
        return position
    return float(to_dial(position))


async def _where(show_dial: bool) -> dict[str, float | Exception]:
    ctx = current_context()
    motors = list(ctx.motors())
    positions = await read_positions(motors, ctx.snapshot_timeout)
    ctx.print("Current Positions: user")
    if show_dial:
        ctx.print("                   dial")
    for chunk in range(0, len(motors), MAX_COLUMNS):
        part = motors[chunk : chunk + MAX_COLUMNS]
        rows = [[_label(m) for m in part], [_fmt_pos(positions[m.name]) for m in part]]
        if show_dial:
            rows.append([_fmt_pos(_dial_of(m, positions[m.name])) for m in part])
        widths = [max(len(row[i]) for row in rows) for i in range(len(part))]
        ctx.print()
        ctx.print("  ".join(f"{c:>{w}}" for c, w in zip(rows[0], widths, strict=True)))
        ctx.print("  ".join("-" * w for w in widths))
        for row in rows[1:]:
            ctx.print("  ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))
    for name, value in positions.items():
        if isinstance(value, Exception):
            ctx.print(f"!ERR {name}: {value}")
    return positions


@prints_its_result
@command
async def wa() -> dict[str, float | Exception]:
    """Where all: every motor of the session, user and dial positions (``!ERR`` for a motor
    whose controller does not answer in time)."""
    return await _where(show_dial=True)


@prints_its_result
@command
async def wu() -> dict[str, float | Exception]:
    """Where user: every motor of the session, user positions."""
    return await _where(show_dial=False)


def _fmt_pos(value: float | Exception) -> str:
    return "!ERR" if isinstance(value, Exception) else f"{value:.4f}"


@prints_its_result
@command
async def wm(*motors: Any) -> dict[str, dict[str, Any]]:
    """Where motors: user and dial positions, limits, offset of each given motor."""
    if not motors:
        raise MotorCommandError("wm() takes motors: wm(m1, m2)")
    ctx = current_context()
    positions = await read_positions(motors, ctx.snapshot_timeout)
    table: dict[str, dict[str, Any]] = {}
    for motor in motors:
        pos = positions[motor.name]
        limits = getattr(motor, "limits", None) or (None, None)
        row = {
            "user": pos,
            "dial": getattr(motor, "dial", None),
            "offset": getattr(motor, "offset", None),
            "sign": getattr(motor, "sign", None),
            "low": limits[0],
            "high": limits[1],
            "unit": getattr(motor, "unit", None),
        }
        table[motor.name] = row
    names = list(table)
    width = max([12, *(len(n) for n in names)])
    ctx.print(" " * 8 + "".join(f"{n:>{width}}" for n in names))
    for label, key in (
        ("User", None),
        (" High", "high"),
        (" Current", "user"),
        (" Low", "low"),
        ("Offset", "offset"),
        ("Dial", None),
        (" Current", "dial"),
    ):
        if key is None:
            ctx.print(label)
            continue
        values = [table[n][key] for n in names]
        cells = [_fmt_pos(v) if isinstance(v, Exception) else _fmt(v) for v in values]
        ctx.print(f"{label:<8}" + "".join(f"{c:>{width}}" for c in cells))
    return table


async def count_once(controller: Any, names: Sequence[str], count_time: float) -> dict[str, Any]:
    """One software-timed count of ``controller``: ``{counter name: value}`` of ``names``."""
    count = getattr(controller, "count", None)
    if count is not None:
        values = await count(count_time)
    else:  # any Acquirable: the acquisition protocol, for one point
        await controller.prepare(AcquisitionParameters(count_time=count_time, npoints=1))
        try:
            await controller.start()
            await controller.trigger()
            values = {name: batch[0] for name, batch in (await controller.read()).items()}
        finally:
            with anyio.CancelScope(shield=True):
                await controller.stop()
    return {name: values[name] for name in names if name in values}


@command
async def umvct(motor: Any, position: float, *counters: Any, count_time: float = 0.1) -> None:
    """``umvct(m1, 2, diode)``: move ``motor`` to ``position`` showing its position and the
    counters (default: the active measurement group's), counted every ``count_time`` s while
    it moves, on one line updated in place."""
    [(motor, target)] = _pairs((motor, position), "umvct")
    if isinstance(count_time, bool) or not isinstance(count_time, (int, float)) or count_time < 0:
        raise MotorCommandError(f"umvct(): count_time must be a number >= 0, got {count_time!r}")
    ctx = current_context()
    if counters:
        chosen = expand_counters(counters)
    else:
        mg = ctx.active_mg()
        if mg is None:
            raise MotorCommandError("umvct(): give counters (umvct(m1, 2, diode)) or set_active_mg")
        chosen = list(mg.counters)
    chosen = [c for c in chosen if not tuple(getattr(c, "shape", ()) or ())]
    if not chosen:
        raise MotorCommandError("umvct(): no scalar counter to show")
    groups = group_by_controller(chosen)
    check = getattr(motor, "check_limits", None)
    if check is not None:  # refused before anything is shown or counted
        check(target)
    labels = [_label(motor)] + [
        f"{c.name}[{c.unit}]" if getattr(c, "unit", None) else c.name for c in chosen
    ]
    width = max([12, *(len(label) for label in labels)])
    ctx.print("  ".join(f"{label:>{width}}" for label in labels))
    values: dict[int, Any] = {}

    async def count_all() -> None:
        async def one(controller: Any, members: list[Any]) -> None:
            read = await count_once(controller, [c.name for c in members], count_time)
            for counter in members:
                values[id(counter)] = read.get(counter.name)

        async with anyio.create_task_group() as tg:
            for controller, members in groups:
                tg.start_soon(one, controller, members)

    def line() -> str:
        cells = [_fmt(motor.position)] + [
            _fmt(float(values[id(c)])) if values.get(id(c)) is not None else "-" for c in chosen
        ]
        return "  ".join(f"{cell:>{width}}" for cell in cells)

    def show() -> None:
        if ctx.output is not None:
            ctx.output.write("\r" + line())
            ctx.output.flush()

    async with ctx.lock_devices(*(controller.name for controller, _ in groups)):
        done = anyio.Event()

        async def move() -> None:
            try:
                await move_together([(motor, target)], context=ctx)
            finally:
                done.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(move)
                while not done.is_set():
                    await count_all()
                    show()
                    if count_time == 0:
                        await anyio.sleep(UMV_REFRESH)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        await count_all()  # at the final position
    with anyio.move_on_after(2.0):
        await motor.read_position()
    ctx.print("\r" + line())
