"""EPICS devices through blissng.epics, against the simulated IOC (caproto motor records,
a scaler and a waveform over Channel Access, p4p's server over PV Access; its own process on
127.0.0.1 with ports of its own: the epics_ioc fixture)."""

from __future__ import annotations

import sys

import anyio
import pytest

from blissng.devices import AxisState, LimitError, LimitSwitchError
from blissng.epics import EpicsDisconnected, EpicsNotInstalled, EpicsTimeout

pytestmark = pytest.mark.anyio

MOTOR = """
name: em
class: EpicsMotor
pv: "SIM:m1"
"""


@pytest.fixture
def load(load_config, epics_ioc):
    """The test's configuration, against the simulated server (reset for this test)."""
    return load_config


async def caget(pv: str):
    from aioca import caget

    return await caget(pv, timeout=10)


async def caput(pv: str, value) -> None:
    from aioca import caput

    await caput(pv, value, wait=True, timeout=10)


def gets(motor) -> int:
    return sum(pv.gets for pv in motor.controller.record(motor).fields.values())


async def test_motor_record_moves_and_takes_its_settings(load, write_config):
    write_config("m.yml", MOTOR)
    em = load().get("em")
    await em.connect()
    assert em.velocity == 2.0 and em.acceleration == 20.0  # VELO, VELO / ACCL
    assert em.unit == "mm" and em.limits == (float("-inf"), float("inf"))  # HLM = LLM = 0
    await em.move(0.5)
    assert em.position == pytest.approx(0.5) and em.state is AxisState.READY
    assert await caget("SIM:m1.RBV") == pytest.approx(0.5)
    await em.set_velocity(4)
    assert await caget("SIM:m1.VELO") == 4 and await caget("SIM:m1.ACCL") == pytest.approx(0.2)


async def test_motion_is_followed_through_monitors_dmov_one_zero_one(load, write_config):
    from aioca import camonitor

    write_config("m.yml", MOTOR + "liveness: 30\npolling_interval: 0.001\n")
    em = load().get("em")
    await em.connect()
    dmov: list[int] = []
    seen = camonitor("SIM:m1.DMOV", lambda v: dmov.append(int(v)))
    try:
        await anyio.sleep(0.2)
        record = em.controller.record(em)
        assert record.pushed.live
        states: list[AxisState] = []
        em.on_state(states.append)
        before = gets(em)
        await em.move(1.5)
        await anyio.sleep(0.2)
    finally:
        seen.close()
    # Polling every 1 ms would have read hundreds of times: monitors carried the motion
    # (only the final RBV is read).
    assert gets(em) - before <= 2
    assert states == [AxisState.MOVING, AxisState.READY]
    assert dmov[0] == 1 and dmov[-2:] == [0, 1] and dmov.count(0) == 1
    assert em.position == pytest.approx(1.5)


async def test_cancelled_move_puts_stop(load, write_config):
    write_config("m.yml", MOTOR)
    em = load().get("em")
    await em.connect()
    with anyio.move_on_after(0.3):
        await em.move(10)
    assert not em.is_moving and em.state is AxisState.READY
    assert 0 < em.position < 2
    assert await caget("SIM:m1.DMOV") == 1
    assert await caget("SIM:m1.RBV") == pytest.approx(em.position)


async def test_soft_limits_refuse_a_move_before_anything_is_sent(load, write_config):
    await caput("SIM:m1.HLM", 2.0)
    await caput("SIM:m1.LLM", -2.0)
    write_config("m.yml", MOTOR)
    em = load().get("em")
    await em.connect()
    assert em.limits == (-2, 2)
    with pytest.raises(LimitError, match=r"em: move to 3 refused: .*\[-2, 2\]; nothing moved"):
        await em.move(3)
    assert await caget("SIM:m1") == 0 and await caget("SIM:m1.LVIO") == 0


async def test_limit_switch_hit_while_moving(load, write_config):
    await caput("SIM:m1:HHL", 0.4)
    write_config("m.yml", MOTOR)
    em = load().get("em")
    with pytest.raises(LimitSwitchError, match="em: stopped on its positive limit switch at 0.4"):
        await em.move(1)
    assert em.state is AxisState.LIMPOS
    assert await caget("SIM:m1.HLS") == 1
    await em.move(0)
    assert em.state is AxisState.READY


@pytest.mark.timeout(120)
async def test_ioc_killed_mid_move_then_recovery(load, write_config, epics_ioc):
    write_config("m.yml", MOTOR)
    em = load().get("em")
    await em.connect()
    await em.move(5, wait=False)
    with anyio.fail_after(20):  # killed while the IOC moves it (2.5 s at 2 mm/s)
        while await caget("SIM:m1.RBV") < 0.2:
            await anyio.sleep(0.02)  # another process moves it: nothing to wait on
    epics_ioc.kill()
    with anyio.fail_after(20):
        with pytest.raises(EpicsDisconnected, match=r"em: waiting for SIM:m1\.\w+ failed: "):
            await em.wait_move()
    await anyio.to_thread.run_sync(epics_ioc.restart)
    with anyio.fail_after(30):  # Channel Access finds the IOC again by itself
        await em.move(0.2)
    assert em.position == pytest.approx(0.2)
    assert em.controller.record(em).pushed.live
    assert await caget("SIM:m1.RBV") == pytest.approx(0.2)


async def test_counters_scalars_waveforms_ca_and_pva(load, write_config):
    write_config(
        "c.yml",
        """
        - name: ec
          class: EpicsCounterController
          counters:
            - {name: det, pv: "SIM:sc:S3", mode: MEAN}
            - {name: mon, pv: "SIM:sc:S2"}
            - {name: spectrum, pv: "SIM:spectrum", length: 256}
            - {name: pdet, pv: "pva://SIM:pva:det"}
            - {name: pspectrum, pv: "pva://SIM:pva:spectrum", length: 256}
        """,
    )
    write_config("m.yml", MOTOR)
    config = load()
    ec, em = config.get("ec"), config.get("em")
    await em.move(1.0)  # S3 peaks at SIM:m1 = 1
    await anyio.sleep(0.1)  # the PVA detector posts every 20 ms
    data = await ec.count(0.05)
    assert data["det"] == pytest.approx(1010, rel=0.05)
    assert data["mon"] == pytest.approx(1e5, rel=0.01)
    assert data["spectrum"].shape == (256,) and data["spectrum"][128] > 1000
    assert data["pdet"] == pytest.approx(1010, rel=0.01)
    assert data["pspectrum"].shape == (256,) and data["pspectrum"][128] > 1000


async def test_settable_pvs_as_axes_ca_and_pva(load, write_config):
    write_config(
        "a.yml",
        """
        - name: sp
          class: EpicsSettableAxis
          pv: "SIM:setpoint"
          readback: "SIM:readback"
          low_limit: -10
          high_limit: 10
        - name: psp
          class: EpicsSettableAxis
          pv: "pva://SIM:pva:setpoint"
        """,
    )
    config = load()
    sp, psp = config.get("sp"), config.get("psp")
    await sp.move(2.5)
    assert sp.position == 2.5 and await caget("SIM:readback") == 2.5
    with pytest.raises(LimitError):
        await sp.move(11)
    await psp.move(-1.25)
    assert await psp.read_position() == -1.25


async def test_a_missing_pv_times_out_naming_it(load, write_config):
    write_config("m.yml", MOTOR.replace("SIM:m1", "SIM:nope") + "timeout: 0.5\n")
    em = load().get("em")
    with anyio.fail_after(10):
        with pytest.raises(EpicsTimeout, match=r"em: reading SIM:nope\.VELO failed: .*timeout"):
            await em.connect()


async def test_without_aioca_the_error_names_the_extra(load, write_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "aioca", None)  # import aioca -> ImportError
    write_config("m.yml", MOTOR)
    em = load().get("em")
    with pytest.raises(EpicsNotInstalled, match=r"em: needs aioca.*pip install 'blissng\[epics\]'"):
        await em.connect()
