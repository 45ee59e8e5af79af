"""mv, mvr, umv, umvr, wa, wm on the in-process simulated controller: positions, group moves
refused before anything moves, live positions while moving, Ctrl-C stopping the motors, a dead
controller in wa(), and the blocking form from a worker thread."""

from __future__ import annotations

import io
from typing import Any

import anyio
import anyio.to_thread
import pytest

from blissng.comm import CommunicationError
from blissng.devices import LimitError
from blissng.scans import (
    MotorCommandError,
    ScanContext,
    mv,
    mvr,
    umv,
    umvr,
    use_context,
    wa,
    wm,
    wu,
)
from blissng.sim import MockupController
from blissng.testing import wait_until
from test_scans import DeadMotor

pytestmark = pytest.mark.anyio


def controller(instant: bool = True, velocity: float = 1000.0) -> Any:
    axes = [
        {"name": "m1", "velocity": velocity, "acceleration": velocity * 10,
         "low_limit": -10, "high_limit": 10, "unit": "mm"},
        {"name": "m2", "velocity": velocity, "acceleration": velocity * 10, "offset": 1.0},
    ]  # fmt: skip
    return MockupController(
        "ctl", MockupController.Parameters.model_validate({"instant": instant, "axes": axes})
    )


@pytest.fixture
def ctx() -> Any:
    context = ScanContext(session="t", output=io.StringIO())
    with use_context(context):
        yield context


async def test_mv_and_mvr_move_together(ctx) -> None:
    ctl = controller()
    m1, m2 = ctl.child("m1"), ctl.child("m2")
    await mv(m1, 2, m2, -3)
    assert (m1.position, m2.position) == (2, -3)
    await mvr(m1, 0.5, m2, 1)
    assert (m1.position, m2.position) == (2.5, -2)


async def test_a_refused_target_moves_nothing(ctx) -> None:
    ctl = controller()
    m1, m2 = ctl.child("m1"), ctl.child("m2")
    with pytest.raises(LimitError, match=r"m1: move to 11 refused"):
        await mv(m2, 5, m1, 11)
    assert (m1.position, m2.position) == (0, 1.0)
    with pytest.raises(MotorCommandError, match="motor, position pairs"):
        await mv(m1)
    with pytest.raises(MotorCommandError, match="must be a number"):
        await mv(m1, "far")
    with pytest.raises(MotorCommandError, match="given twice"):
        await mv(m1, 1, m1, 2)


async def test_umv_prints_positions_while_moving(ctx) -> None:
    ctl = controller(instant=False, velocity=5.0)  # 2 mm take about 0.4 s
    m1 = ctl.child("m1")
    await umv(m1, 2)
    assert m1.position == 2
    text = ctx.output.getvalue()
    updates = text.split("\r")
    assert updates[0].split() == ["m1"]
    assert updates[-1].split() == ["2.0000"]
    assert len(updates) >= 3  # at least one position shown during the move
    await umvr(m1, -1)
    assert m1.position == 1


class GoneMotor(DeadMotor):
    """A motor whose controller's process was killed: every call fails at once."""

    name = "gone"

    async def move(self, target: float, wait: bool = True) -> None:
        raise CommunicationError("motors", "cannot connect to serial:///dev/ttyS0")

    async def read_position(self) -> float:
        raise CommunicationError("motors", "cannot connect to serial:///dev/ttyS0")


async def test_umv_of_a_motor_whose_device_is_gone_says_why(ctx) -> None:
    """It said "ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)"."""
    with pytest.raises(CommunicationError, match="device 'motors': cannot connect"):
        await umv(GoneMotor(), 1)


async def test_cancelling_umv_stops_the_motors(ctx) -> None:
    ctl = controller(instant=False, velocity=2.0)
    m1, m2 = ctl.child("m1"), ctl.child("m2")
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(umv, m1, 8, m2, 9)
            await wait_until(lambda: m1.is_moving and m2.is_moving, timeout=5, interval=0.005)
            scope.cancel()
    assert not m1.is_moving and not m2.is_moving
    assert (await m1.read_position()) < 8 and (await m2.read_position()) < 9


async def test_wa_lists_every_motor_and_survives_a_dead_one(ctx) -> None:
    ctl = controller()
    m1, m2 = ctl.child("m1"), ctl.child("m2")
    await mv(m1, 1.5)
    ctx.motors = lambda: [m1, DeadMotor(), m2]
    ctx.snapshot_timeout = 0.05
    positions = await wa()
    assert positions["m1"] == 1.5 and positions["m2"] == 1.0
    assert isinstance(positions["dead"], TimeoutError)
    lines = ctx.output.getvalue().splitlines()
    assert lines[:2] == ["Current Positions: user", "                   dial"]
    assert lines[3].split() == ["m1[mm]", "dead", "m2"]  # units, as BLISS shows them
    assert lines[5].split() == ["1.5000", "!ERR", "1.0000"]  # user
    assert lines[6].split() == ["1.5000", "!ERR", "0.0000"]  # dial (m2: offset 1)
    assert "!ERR dead: " in lines[7]  # why, under the table
    ctx.output.seek(0)
    ctx.output.truncate()
    await wu()  # user positions only
    lines = ctx.output.getvalue().splitlines()
    assert lines[0] == "Current Positions: user" and len(lines) == 6


async def test_wm_shows_user_dial_limits_and_offset(ctx) -> None:
    ctl = controller()
    m1, m2 = ctl.child("m1"), ctl.child("m2")
    await mv(m2, 3)
    table = await wm(m1, m2)
    assert table["m1"]["low"] == -10 and table["m1"]["high"] == 10
    assert table["m2"]["user"] == 3 and table["m2"]["dial"] == 2 and table["m2"]["offset"] == 1
    text = ctx.output.getvalue()
    assert "Offset" in text and "Dial" in text and "10.0000" in text
    with pytest.raises(MotorCommandError, match="wm\\(\\) takes motors"):
        await wm()


async def test_blocking_motor_commands_from_a_worker_thread(ctx) -> None:
    ctl = controller()
    m1 = ctl.child("m1")

    def user_code() -> float:
        mv(m1, 4)
        mvr(m1, -1)
        return wa()["m1"]

    ctx.motors = lambda: [m1]
    assert await anyio.to_thread.run_sync(user_code) == 3
