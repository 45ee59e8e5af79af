"""Tango devices through blissng.tango, against the simulated Tango device server (a real
pytango server in its own process, no database: the tango_sim fixture)."""

from __future__ import annotations

import json
import os
import signal
import sys

import anyio
import pytest

from blissng.devices import AxisState, DeviceError, LimitError, LimitSwitchError
from blissng.tango import TangoError, TangoNotInstalled, TangoTimeout, tango_proxy

pytestmark = pytest.mark.anyio

MOTOR = """
name: tm
class: TangoMotor
tango_name: sim/motor/1
tango_host: sim://tango
"""


@pytest.fixture
def load(load_config, tango_sim):
    """The test's configuration, against the simulated server (reset for this test)."""
    return load_config


def raw(tango_sim, name: str = "sim/motor/1"):
    import tango

    proxy = tango.DeviceProxy(tango_sim.trl(name))
    proxy.set_timeout_millis(10000)
    return proxy


async def configure(tango_sim, **fields) -> None:
    proxy = raw(tango_sim)
    await anyio.to_thread.run_sync(proxy.command_inout, "Configure", json.dumps(fields))


async def test_motor_moves_and_takes_the_device_settings(load, write_config, tango_sim):
    write_config("m.yml", MOTOR)
    tm = load().get("tm")
    await tm.connect()
    assert tm.velocity == 2.0 and tm.acceleration == 20.0  # read from the device
    assert tm.unit == "mm"  # the attribute's unit
    await tm.move(0.5)
    assert tm.position == pytest.approx(0.5)
    assert tm.state is AxisState.READY
    assert raw(tango_sim).Position == pytest.approx(0.5)
    await tm.set_velocity(4)
    assert raw(tango_sim).Velocity == 4.0
    await tm.move_relative(-1)
    assert await tm.read_position() == pytest.approx(-0.5)


async def test_motion_is_followed_through_events_not_polling(load, write_config, tango_sim):
    write_config("m.yml", MOTOR + "liveness: 30\npolling_interval: 0.001\n")
    tm = load().get("tm")
    await tm.connect()
    link = tm.controller.link(tm)
    assert link.pushed.live
    states: list[AxisState] = []
    tm.on_state(states.append)
    positions: list[float] = []
    tm.on_position(positions.append)
    calls = tm.tango_device.calls
    updates = link.pushed.updates
    await tm.move(1.5)  # about 0.85 s at 2 mm/s, 20 mm/s²
    # Polling every 1 ms would have made hundreds of calls: the motion was followed through
    # the device's events (write, one State read after it, the final position read).
    assert tm.tango_device.calls - calls <= 4
    assert link.pushed.updates - updates >= 10  # Position events every 20 ms, State events
    assert states == [AxisState.MOVING, AxisState.READY]
    assert len(positions) >= 5 and positions[-1] == pytest.approx(1.5)
    assert tm.position == pytest.approx(1.5)


async def test_cancelled_move_stops_the_motor(load, write_config, tango_sim):
    write_config("m.yml", MOTOR)
    tm = load().get("tm")
    await tm.connect()
    with anyio.move_on_after(0.3):
        await tm.move(10)  # 5 s
    assert not tm.is_moving and tm.state is AxisState.READY
    assert 0 < tm.position < 2
    proxy = raw(tango_sim)
    assert str(proxy.State()) == "ON"
    assert proxy.Position == pytest.approx(tm.position)


async def test_device_limits_refuse_a_move_before_it_starts(load, write_config, tango_sim):
    await configure(tango_sim, low_limit=-2, high_limit=2)
    write_config("m.yml", MOTOR)
    tm = load().get("tm")
    await tm.connect()
    assert tm.limits == (-2, 2)
    calls = tm.tango_device.calls
    with pytest.raises(LimitError, match=r"tm: move to 3 refused: .*\[-2, 2\]; nothing moved"):
        await tm.move(3)
    assert tm.tango_device.calls == calls  # nothing was sent
    assert raw(tango_sim).Position == 0


async def test_limit_switch_hit_while_moving(load, write_config, tango_sim):
    await configure(tango_sim, hard_high=0.4)
    write_config("m.yml", MOTOR)
    tm = load().get("tm")
    with pytest.raises(LimitSwitchError, match="tm: stopped on its positive limit switch at 0.4"):
        await tm.move(1)
    assert tm.state is AxisState.LIMPOS
    assert str(raw(tango_sim).State()) == "ALARM"
    await tm.move(0)  # away from the switch
    assert tm.state is AxisState.READY


async def test_device_errors_name_the_device_the_attribute_and_the_reason(
    load, write_config, tango_sim
):
    write_config("m.yml", MOTOR)
    tm = load().get("tm")
    await tm.connect()
    device = tm.tango_device
    with pytest.raises(TangoError) as caught:
        await device.write("Velocity", -1.0)
    message = str(caught.value)
    assert message.startswith("tm: writing Velocity = -1.0 of tango://127.0.0.1:")
    assert "/sim/motor/1#dbase=no failed: BadVelocity: velocity must be > 0" in message
    assert caught.value.reason == "BadVelocity"
    write_config("n.yml", MOTOR.replace("name: tm", "name: tn") + "attribute: Nope\n")
    with pytest.raises(DeviceError, match="tn: .* has no attribute 'Nope'"):
        await load().get("tn").connect()


async def test_every_call_has_a_timeout(load, write_config, tango_sim):
    write_config("m.yml", MOTOR + "timeout: 0.5\n")
    tm = load().get("tm")
    await tm.connect()
    os.kill(tango_sim.pid, signal.SIGSTOP)  # the server hangs
    try:
        with anyio.fail_after(10):
            with pytest.raises(TangoTimeout, match=r"tm: reading Position of tango://.*"):
                await tm.read_position()
    finally:
        os.kill(tango_sim.pid, signal.SIGCONT)
    assert await tm.read_position() == 0


@pytest.mark.timeout(120)
async def test_server_killed_mid_move_then_recovery(load, write_config, tango_sim):
    write_config("m.yml", MOTOR + "liveness: 0.5\n")
    tm = load().get("tm")
    await tm.connect()
    await tm.move(5, wait=False)
    await anyio.sleep(0.3)
    tango_sim.kill()
    with anyio.fail_after(20):
        with pytest.raises(TangoError) as caught:
            await tm.wait_move()
    message = str(caught.value)
    assert message.startswith("tm: reading State of tango://127.0.0.1:")
    assert "/sim/motor/1#dbase=no failed: " in message
    assert caught.value.reason == "API_CorbaException"
    await anyio.to_thread.run_sync(tango_sim.restart)
    # The next command works: the proxy reconnects, the events are subscribed again.
    await tm.move(0.2)
    assert tm.position == pytest.approx(0.2)
    link = tm.controller.link(tm)
    assert link.pushed.live  # subscribed again
    # Events flow again: at once as a rule; cppTango may keep the old server's event channel
    # until its keep-alive thread notices (10 s), and the liveness reads keep moves right
    # meanwhile.
    updates = link.pushed.updates
    with anyio.fail_after(40):
        target = 0.4
        while link.pushed.updates == updates:
            await tm.move(target)
            assert tm.position == pytest.approx(target)
            target = 0.6 - target
            await anyio.sleep(0.5)
    assert raw(tango_sim).Position == pytest.approx(tm.position)


async def test_counters_scalar_and_spectrum(load, write_config, tango_sim):
    write_config(
        "c.yml",
        """
        - name: tc
          class: TangoCounterController
          tango_name: sim/counter/1
          tango_host: sim://tango
          counters:
            - {name: counts, attribute: Counts, mode: MEAN}
            - {name: spectrum, attribute: Spectrum, length: 256}
        """,
    )
    write_config("m.yml", MOTOR)
    config = load()
    tc, tm = config.get("tc"), config.get("tm")
    await tm.move(1.0)  # the counts peak at sim/motor/1 = 1
    at_peak = await tc.count(0.05)
    assert at_peak["counts"] == pytest.approx(1010, rel=0.1)
    assert at_peak["spectrum"].shape == (256,)
    assert at_peak["spectrum"][128] == pytest.approx(1 + at_peak["counts"], rel=0.1)
    assert tc.child("counts").unit == "counts"
    await tm.move(3.0)
    assert (await tc.count(0))["counts"] < 100


async def test_spectrum_without_length_says_what_to_write(load, write_config, tango_sim):
    write_config(
        "c.yml",
        """
        name: tc
        class: TangoCounterController
        tango_name: sim/counter/1
        tango_host: sim://tango
        counters: [{name: spectrum, attribute: Spectrum}]
        """,
    )
    with pytest.raises(DeviceError, match=r"tc: counter spectrum: .* give its length"):
        await load().get("tc").connect()


async def test_attribute_as_a_settable_axis(load, write_config, tango_sim):
    write_config(
        "a.yml",
        """
        name: volt
        class: TangoAttributeAxis
        tango_name: sim/counter/1
        tango_host: sim://tango
        attribute: Setpoint
        readback: Readback
        low_limit: -10
        high_limit: 10
        """,
    )
    volt = load().get("volt")
    await volt.move(2.5)
    assert volt.position == 2.5 and volt.unit == "V"
    # The counter device pushes no events (no change events configured): the axis polls.
    assert not volt.controller.link(volt).pushed.live
    assert raw(tango_sim, "sim/counter/1").Readback == 2.5
    with pytest.raises(LimitError):
        await volt.move(11)


async def test_tango_proxy_for_shell_users(tango_sim):
    proxy = await anyio.to_thread.run_sync(tango_proxy, "sim/motor/2", "sim://tango")
    assert await anyio.to_thread.run_sync(lambda: proxy.Velocity) == 5.0


async def test_without_pytango_the_error_names_the_extra(load, write_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "tango", None)  # import tango -> ImportError
    write_config("m.yml", MOTOR)
    tm = load().get("tm")
    extra = r"tm: needs pytango.*pip install 'blissng\[tango\]'"
    with pytest.raises(TangoNotInstalled, match=extra):
        await tm.connect()
