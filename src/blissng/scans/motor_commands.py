"""The motor commands users type: ``mv``, ``umv``, ``mvr``, ``umvr``, ``wa()``, ``wm(*motors)``.

Built on the ``Movable`` protocol (``position``, ``read_position``, ``move(target, wait)``,
``wait_move``, ``stop``) and, when an axis has them, the richer ``Axis`` attributes (``dial``,
``offset``, ``sign``, ``limits``, ``unit``, ``check_limits``); axes move as a
``blissng.devices.group.Group`` (one start per controller). Several motors given to one
command move together: every target is validated first (nothing moves if one is refused),
then all start, then all are awaited. Cancelling a move (Ctrl-C) stops every motor it started,
in a shielded scope with a deadline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import anyio

from blissng.devices.axis import Axis
from blissng.devices.group import Group
from blissng.locks import device_lock

from .bridge import command
from .context import current_context

STOP_DEADLINE = 5.0
UMV_REFRESH = 0.1


class MotorCommandError(ValueError):
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


async def move_together(pairs: Sequence[tuple[Any, float]]) -> None:
    """Check every target, lock the motors (see blissng.locks), start all moves, wait for all;
    stop all if cancelled or failed."""
    for motor, target in pairs:
        check = getattr(motor, "check_limits", None)
        if check is not None:
            check(target)
    async with device_lock(*(motor.name for motor, _ in pairs)):
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


async def _umove(pairs: Sequence[tuple[Any, float]]) -> None:
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

    async with anyio.create_task_group() as tg:
        tg.start_soon(show)
        try:
            await move_together(pairs)
        finally:
            done.set()
    for motor in motors:
        read = getattr(motor, "read_position", None)
        if read is not None:
            with anyio.move_on_after(2.0):
                await read()
    ctx.print("\r" + line())


@command
async def umv(*args: Any) -> None:
    """``umv(m1, 1.0)``: like ``mv``, printing positions while the motors move."""
    await _umove(_pairs(args, "umv"))


@command
async def umvr(*args: Any) -> None:
    """``umvr(m1, 0.5)``: relative ``umv``."""
    pairs = _pairs(args, "umvr")
    await _umove([(m, m.position + delta) for m, delta in pairs])


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


@command
async def wa() -> dict[str, float | Exception]:
    """Where all: a table of every motor of the session, user positions."""
    ctx = current_context()
    motors = list(ctx.motors())
    positions = await read_positions(motors, ctx.snapshot_timeout)
    ctx.print("Current positions (user):")
    width = max([12, *(len(m.name) for m in motors)])
    for chunk in range(0, len(motors), 6):
        part = motors[chunk : chunk + 6]
        ctx.print("  ".join(f"{m.name:>{width}}" for m in part))
        ctx.print("  ".join(f"{_fmt_pos(positions[m.name]):>{width}}" for m in part))
        ctx.print()
    return positions


def _fmt_pos(value: float | Exception) -> str:
    return "!ERR" if isinstance(value, Exception) else f"{value:.4f}"


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
