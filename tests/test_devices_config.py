"""Devices built from YAML through blissng.config: children, references, settings, errors."""

from __future__ import annotations

import pytest

from blissng.config import Config, ConfigError
from blissng.devices import (
    Acquirable,
    Axis,
    CalcAxis,
    CalcCounterController,
    Counter,
    LimitError,
    Movable,
)
from blissng.redisdb import SettingsStore, async_client

pytestmark = pytest.mark.anyio

MOTORS = """
- name: motors
  class: MockupController
  instant: true
  axes:
    - name: m1
      steps_per_unit: 100
      low_limit: -10
      high_limit: 10
      unit: mm
    - name: s1l
    - name: s1h
- name: s1
  class: Slit
  low: $s1l
  high: $s1h
  axes:
    - name: s1g
      tag: gap
    - name: s1o
      tag: offset
"""

COUNTERS = """
- name: sim
  class: SimCounterController
  seed: 3
  counters:
    - name: diode
      motor: $m1
      center: 1.5
      fwhm: 0.5
      height: 1000
    - name: mon
      height: 0
      background: 100
- name: norm
  class: CalcCounterController
  inputs:
    d: $diode
    m: $mon
  outputs:
    - name: diode_norm
      expression: d / m
"""


async def test_motors_counters_and_calc_from_yaml(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    write_config("counters.yml", COUNTERS)
    config = Config(config_dir)
    m1 = config.get("m1")
    assert isinstance(m1, Axis) and isinstance(m1, Movable)
    assert m1.controller is config.get("motors") and m1.unit == "mm"
    diode = config.get("diode")
    assert isinstance(diode, Counter) and isinstance(diode.controller, Acquirable)
    await m1.move(1.5)
    assert (await diode.controller.count(0))["diode"] == pytest.approx(1000)
    norm = config.get("norm")
    assert isinstance(norm, CalcCounterController)
    assert (await norm.count(0))["diode_norm"] == pytest.approx(10)
    with pytest.raises(LimitError, match=r"m1: move to 11 refused: .*\[-10, 10\]"):
        await m1.move(11)


async def test_slit_from_yaml(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    config = Config(config_dir)
    gap, offset = config.get("s1g"), config.get("s1o")
    assert isinstance(gap, CalcAxis) and isinstance(gap, Movable)
    low, high = config.get("s1l"), config.get("s1h")
    await gap.move(2)
    assert (low.position, high.position) == (-1, 1)
    await offset.move(0.5)
    assert (low.position, high.position) == (-0.5, 1.5)
    assert gap.position == 2
    await high.move(3)  # moving a blade moves the calculated positions
    assert (gap.position, offset.position) == (3.5, 1.25)


async def test_wrong_parameter_type_names_object_field_and_line(write_config, config_dir):
    write_config(
        "motors.yml",
        """
        - name: motors
          class: MockupController
          axes:
            - name: m1
              velocity: fast
            - name: m2
        """,
    )
    config = Config(config_dir)
    with pytest.raises(ConfigError) as info:
        config.get("m1")
    message = str(info.value)
    assert "motors" in message and "velocity" in message and "fast" in message
    assert "motors.yml" in message


async def test_unknown_motor_references_are_named(write_config, config_dir):
    write_config(
        "counters.yml",
        """
        - name: sim
          class: SimCounterController
          counters:
            - name: diode
              motor: $m9
        """,
    )
    config = Config(config_dir)
    with pytest.raises(ConfigError, match=r"\$m9"):
        config.get("diode")
    with pytest.raises(ConfigError, match="no object named 'm9'"):
        config.get("m9")


async def test_slit_needs_axes_not_counters(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    write_config("counters.yml", COUNTERS)
    write_config(
        "bad.yml",
        """
        - name: s2
          class: Slit
          low: $diode
          high: $m1
        """,
    )
    config = Config(config_dir)
    with pytest.raises(ConfigError) as info:
        config.get("s2")
    assert "s2" in str(info.value) and "low" in str(info.value)


async def test_axis_settings_through_the_config_context(write_config, config_dir, redis_urls):
    write_config("motors.yml", MOTORS)
    client = async_client(redis_urls.settings)
    try:
        store = SettingsStore(client)
        config = Config(config_dir, settings=store)
        m1 = config.get("m1")
        await m1.move(2)
        await m1.set_velocity(3)
        stored = await client.hgetall("settings:m1")
        assert stored[b"velocity"] == b"3.0" and stored[b"dial_position"] == b"2.0"
        again = Config(config_dir, settings=store).get("m1")
        await again.connect()
        assert again.velocity == 3
        assert again.position_mismatch is not None  # a new in-process simulator starts at 0
    finally:
        await client.aclose()


async def test_group_of_calculated_and_real_axes(write_config, config_dir):
    from blissng.devices import DeviceError, Group

    write_config("motors.yml", MOTORS)
    config = Config(config_dir)
    gap, offset, m1 = config.get("s1g"), config.get("s1o"), config.get("m1")
    low, high = config.get("s1l"), config.get("s1h")
    group = Group(gap, offset, m1)
    assert set(group.axes) == {low, high, m1}
    await group.move({gap: 2, offset: 0.5, m1: 3})  # gap and offset solved together
    assert (low.position, high.position, m1.position) == (-0.5, 1.5, 3)
    with pytest.raises(DeviceError, match="s1: s1l is asked to go to 0 and, through s1, to"):
        await Group(gap, low).move({gap: 4, low: 0})
    with pytest.raises(LimitError, match="m1: move to 30 refused"):
        await group.move({gap: 1, m1: 30})
    assert gap.position == 2  # nothing moved


@pytest.mark.parametrize("first", ["m2", "motors"])
def test_a_bad_axis_costs_that_axis_alone(write_config, config_dir, first):
    """Issue 13, finding 10: one bad axis field dropped every axis of its controller (and
    every counter, slit and group that used one)."""
    write_config(
        "motors.yml",
        """
        - name: motors
          class: MockupController
          instant: true
          axes:
            - {name: m1}
            - name: m2
              velocity: fast
              acceleration: [1]
            - name: m3
              unknown_field: 1
            - name: m4
        - name: sim
          class: SimCounterController
          counters:
            - name: diode
              motor: $m1
            - name: lost
              motor: $m9
        """,
    )
    config = Config(config_dir)
    if first == "m2":  # a bad child asked first, or its controller: the same outcome
        with pytest.raises(ConfigError) as caught:
            config.get("m2")
    else:
        assert set(config.get("motors").axes) == {"m1", "m4"}
    config.build_all()
    assert sorted(config.built()) == ["diode", "m1", "m4", "motors", "sim"]
    assert set(config.get("motors").axes) == {"m1", "m4"}
    by_object = {error.object: error for error in config.errors}
    assert sorted(by_object) == ["lost", "m2", "m3"]
    m2 = by_object["m2"]
    assert (m2.file.name, m2.line, m2.field) == ("motors.yml", 7, "velocity")
    assert "(got 'fast')" in m2.problem and "also field 'acceleration' (line 8)" in m2.problem
    assert m2.problem.endswith("('motors' is loaded without it)")
    assert (by_object["m3"].line, by_object["m3"].field) == (10, "unknown_field")
    lost = by_object["lost"]
    assert (lost.line, lost.field) == (18, "motor") and "'$m9' names no object" in lost.problem
    if first == "m2":
        assert caught.value is m2


def test_an_error_in_the_controller_itself_still_fails_it(write_config, config_dir):
    write_config(
        "motors.yml",
        """
        - {name: motors, class: MockupController, instant: maybe, axes: [{name: m1,
           velocity: fast}]}
        """,
    )
    config = Config(config_dir)
    with pytest.raises(
        ConfigError, match=r"'motors', field 'axes\[0\]\.velocity'.*also field 'instant'"
    ):
        config.get("motors")
    with pytest.raises(ConfigError, match="its parent 'motors' cannot be built"):
        config.get("m1")
