"""Axis on the in-process simulated controller: limits, backlash, encoder, states, callbacks,
stop on cancel, group moves, settings in the real Redis and the start-up position check."""

from __future__ import annotations

import itertools
import time

import anyio
import pytest

from blissng.devices import (
    AxisBusyError,
    AxisFaultError,
    AxisState,
    EncoderMismatchError,
    Group,
    LimitError,
    LimitSwitchError,
    Movable,
    UnknownDeviceError,
)
from blissng.redisdb import SettingsStore, async_client
from blissng.sim import MockupController

pytestmark = pytest.mark.anyio


def mockup(*axes: dict, instant: bool = True, settings=None, name: str = "ctrl"):
    params = MockupController.Parameters.model_validate({"instant": instant, "axes": list(axes)})
    return MockupController(name, params, settings=settings)


async def test_axis_is_movable_and_moves():
    ctrl = mockup({"name": "m1", "steps_per_unit": 100})
    m1 = ctrl.child("m1")
    assert isinstance(m1, Movable)
    await m1.move(2.5)
    assert m1.position == 2.5
    assert await m1.read_position() == 2.5
    assert await ctrl.read_position(m1) == 250  # the controller counts steps
    await m1.move_relative(-1)
    assert m1.position == 1.5
    assert m1.state is AxisState.READY


async def test_user_dial_offset_sign():
    ctrl = mockup({"name": "m1", "sign": -1, "offset": 10})
    m1 = ctrl.child("m1")
    await m1.move(4)
    assert m1.dial == pytest.approx(6)  # user = -dial + 10
    await m1.set_position(0)  # changes the offset only
    assert m1.position == 0 and m1.dial == pytest.approx(6)
    assert m1.offset == pytest.approx(6)


async def test_limits_refuse_before_moving_with_the_limits_in_the_message():
    ctrl = mockup(
        {"name": "m1", "low_limit": -5, "high_limit": 5, "velocity": 20, "acceleration": 1000},
        instant=False,
    )
    m1 = ctrl.child("m1")
    await m1.move(1)
    with pytest.raises(LimitError, match=r"m1: move to 7 refused: .*\[-5, 5\]"):
        await m1.move(7)
    assert ctrl.hw["m1"].target == 1  # nothing was sent to the controller
    await m1.set_limits(-1, 2)
    assert m1.limits == (-1, 2)
    with pytest.raises(LimitError, match=r"\[-1, 2\]"):
        await m1.move(-3)


async def test_limits_with_negative_sign_are_shown_in_user_units():
    ctrl = mockup({"name": "m1", "sign": -1, "low_limit": 0, "high_limit": 4})
    m1 = ctrl.child("m1")
    await m1.connect()
    assert m1.limits == (-4, 0)
    with pytest.raises(LimitError, match=r"\[-4, 0\]"):
        await m1.move(1)


async def test_backlash_approach_ends_in_the_positive_direction():
    ctrl = mockup({"name": "m1", "backlash": 0.5})
    m1 = ctrl.child("m1")
    seen: list[float] = []
    m1.on_position(seen.append)
    await m1.move(2)  # positive: direct
    await m1.move(1)  # negative: overshoot to 0.5, then to 1
    assert seen == [2, 0.5, 1]


async def test_backlash_approach_is_checked_against_the_limits():
    ctrl = mockup({"name": "m1", "backlash": 0.5, "low_limit": 0})
    m1 = ctrl.child("m1")
    await m1.move(1)
    with pytest.raises(LimitError, match="backlash"):
        await m1.move(0.2)
    assert m1.position == 1


async def test_encoder_mismatch_names_the_axis_and_the_tolerance():
    ctrl = mockup({"name": "m1", "encoder": {"steps_per_unit": 1000, "tolerance": 0.01}})
    m1 = ctrl.child("m1")
    await m1.move(1)  # encoder agrees
    ctrl.sim_set_encoder_error(m1, 0.2)
    with pytest.raises(EncoderMismatchError, match=r"m1: encoder reads 2\.2 .*tolerance 0\.01"):
        await m1.move(2)
    assert m1.state is AxisState.FAULT
    assert await m1.read_encoder() == pytest.approx(2.2)


async def test_hardware_limit_switch_stops_the_motion():
    ctrl = mockup({"name": "m1", "hard_high": 3})
    m1 = ctrl.child("m1")
    with pytest.raises(LimitSwitchError, match="m1: stopped on its positive limit switch at 3"):
        await m1.move(5)
    assert m1.state is AxisState.LIMPOS
    await m1.move(0)
    assert m1.state is AxisState.READY


async def test_disabled_axis_refuses_to_move():
    ctrl = mockup({"name": "m1"})
    m1 = ctrl.child("m1")
    await m1.connect()
    ctrl.sim_set_state(m1, AxisState.DISABLED)
    assert await m1.read_state() is AxisState.DISABLED
    with pytest.raises(AxisFaultError, match="m1: is DISABLED"):
        await m1.move(1)


async def test_unknown_axis_error_lists_the_axes():
    ctrl = mockup({"name": "m1"}, {"name": "m2"})
    with pytest.raises(UnknownDeviceError, match=r"ctrl: has no axis 'm3' \(its axes: m1, m2\)"):
        ctrl.child("m3")


async def test_wrong_parameter_types_are_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="steps_per_unit"):
        mockup({"name": "m1", "steps_per_unit": "many"})
    with pytest.raises(ValidationError, match="velocity"):
        mockup({"name": "m1", "velocity": -1})
    with pytest.raises(ValidationError, match="axis 'm1' is declared twice"):
        mockup({"name": "m1"}, {"name": "m1"})


async def test_motion_takes_time_states_and_callbacks():
    ctrl = mockup({"name": "m1", "velocity": 10, "acceleration": 1000}, instant=False)
    m1 = ctrl.child("m1")
    states: list[AxisState] = []
    positions: list[float] = []
    m1.on_state(states.append)
    m1.on_position(positions.append)
    start = time.perf_counter()
    await m1.move(1)
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.1  # 1 unit at 10 units/s
    assert states == [AxisState.MOVING, AxisState.READY]
    assert positions[-1] == 1 and len(positions) > 2  # live positions while moving
    assert all(a <= b for a, b in itertools.pairwise(positions))


async def test_second_move_while_moving_is_refused_and_stop_stops():
    ctrl = mockup({"name": "m1", "velocity": 1, "acceleration": 100}, instant=False)
    m1 = ctrl.child("m1")
    await m1.move(10, wait=False)
    assert m1.is_moving
    with pytest.raises(AxisBusyError, match="m1: is already moving"):
        await m1.move(3)
    await anyio.sleep(0.05)
    await m1.stop()
    assert not m1.is_moving
    assert m1.state is AxisState.READY
    assert 0 < m1.position < 1


async def test_cancelled_wait_stops_the_axis():
    ctrl = mockup({"name": "m1", "velocity": 1, "acceleration": 100}, instant=False)
    m1 = ctrl.child("m1")
    with anyio.move_on_after(0.05):
        await m1.move(10)
    assert not m1.is_moving
    assert await m1.read_state() is AxisState.READY
    position = await m1.read_position()
    assert 0 < position < 1
    assert await m1.read_position() == position  # it really stopped


async def test_home_sets_the_dial_to_the_home_switch():
    ctrl = mockup({"name": "m1", "initial_position": 3})
    m1 = ctrl.child("m1")
    await m1.connect()
    assert m1.position == 3
    await m1.home()
    assert m1.position == 0 and m1.state is AxisState.READY


async def test_group_move_starts_and_stops_together():
    ctrl = mockup(
        {"name": "a", "velocity": 10, "acceleration": 1000},
        {"name": "b", "velocity": 10, "acceleration": 1000},
        instant=False,
    )
    a, b = ctrl.child("a"), ctrl.child("b")
    group = Group(a, b)
    await group.move({a: 0.5, b: 1.0})
    assert ctrl.started_at["a"] == ctrl.started_at["b"]  # one start_all call
    assert a.position == 0.5 and b.position == 1.0
    # a group stops together: b's limit fails the group move, a is stopped at once
    await b.set_limits(None, 100)
    await group.move({a: 10, b: 5}, wait=False)
    await anyio.sleep(0.05)
    await group.stop()
    assert not a.is_moving and not b.is_moving
    assert abs(ctrl.stopped_at["a"] - ctrl.stopped_at["b"]) < 0.01


async def test_group_checks_every_limit_before_anything_moves():
    ctrl = mockup({"name": "a"}, {"name": "b", "high_limit": 1})
    a, b = ctrl.child("a"), ctrl.child("b")
    await Group(a, b).connect()
    with pytest.raises(LimitError, match="b: move to 2 refused"):
        await Group(a, b).move({a: 5, b: 2})
    assert a.position == 0 and not a.is_moving


async def test_group_failure_stops_the_other_axes():
    ctrl = mockup(
        {"name": "a", "velocity": 1, "acceleration": 100},
        {"name": "b", "hard_high": 0.05, "velocity": 10, "acceleration": 1000},
        instant=False,
    )
    a, b = ctrl.child("a"), ctrl.child("b")
    start = time.perf_counter()
    with pytest.raises(LimitSwitchError, match="b: stopped on its positive limit switch"):
        await Group(a, b).move({a: 10, b: 1})
    assert time.perf_counter() - start < 2  # a (10 s long) was stopped when b failed
    assert not a.is_moving and a.position < 1


# ------------------------------------------------------------------ settings in Redis


async def test_settings_persist_in_redis_and_startup_reports_a_mismatch(redis_urls):
    client = async_client(redis_urls.settings)
    try:
        store = SettingsStore(client)
        axis_conf = {"name": "m1", "velocity": 2}
        ctrl = mockup(axis_conf, settings=store)
        m1 = ctrl.child("m1")
        await m1.move(3)
        await m1.set_velocity(5)
        await m1.set_limits(-1, 4)
        await m1.set_position(13)  # offset 10

        # a restart: same settings, the hardware kept its position
        again = mockup(axis_conf, settings=store).child("m1")
        again.controller.hw["m1"] = ctrl.hw["m1"]
        await again.connect()
        assert again.velocity == 5
        assert again.limits == (9, 14)  # dial limits [-1, 4] seen with the new offset 10
        assert again.position == 13 and again.position_mismatch is None

        # a restart on hardware that lost its position (power cycle): reported, no jump hidden
        third = mockup(axis_conf, settings=store).child("m1")
        await third.connect()
        assert third.dial == 0
        assert third.position_mismatch is not None
        assert "controller dial position 0 differs from the stored 3" in third.position_mismatch
        assert await store.object("m1", type(third._store.values)).load()  # still readable
    finally:
        await client.aclose()


async def test_startup_resync_loads_the_stored_position_into_the_controller(redis_urls):
    client = async_client(redis_urls.settings)
    try:
        store = SettingsStore(client)
        conf = {"name": "m1", "position_check": "resync", "steps_per_unit": 10}
        first = mockup(conf, settings=store).child("m1")
        await first.move(7)
        ctrl = mockup(conf, settings=store)
        m1 = ctrl.child("m1")
        await m1.connect()
        assert m1.dial == 7
        assert await ctrl.read_position(m1) == 70
        assert "resynchronised" in (m1.position_mismatch or "")
    finally:
        await client.aclose()


async def test_zero_time_moves_never_sleep():
    ctrl = mockup({"name": "m1"})
    m1 = ctrl.child("m1")
    await m1.connect()
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        await m1.move(i)
    per_move = (time.perf_counter() - start) / n
    assert per_move < 500e-6  # a few µs in practice; polling_interval (10 ms) never waited


@pytest.mark.parametrize("instant", [True, False])
async def test_slit_siblings_started_one_after_the_other_are_merged(instant):
    """What a scan master does with a2scan(s1g, ..., s1o, ...): start both, then wait both."""
    from blissng.devices import CalcAxisParameters, Slit

    ctrl = mockup(
        {"name": "low", "velocity": 20, "acceleration": 1000},
        {"name": "high", "velocity": 20, "acceleration": 1000},
        instant=instant,
    )
    low, high = ctrl.child("low"), ctrl.child("high")
    slit = Slit(
        "s1",
        {"low": low, "high": high},
        [CalcAxisParameters(name="gap", tag="gap"), CalcAxisParameters(name="off", tag="offset")],
    )
    gap, offset = slit.child("gap"), slit.child("off")
    await gap.move(2, wait=False)
    await offset.move(0.5, wait=False)
    await gap.wait_move()
    await offset.wait_move()
    assert (low.position, high.position) == (-0.5, 1.5)
    assert (gap.position, offset.position) == (2, 0.5)
    # a blade moved directly is not merged into: the calculated move is refused
    await low.move(-3, wait=False)
    with pytest.raises(AxisBusyError, match="off: low of s1 still moving"):
        await offset.move(0, wait=False)
    await low.wait_move()
