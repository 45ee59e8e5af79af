"""Background tasks declared in the configuration: the ``background:`` section.

::

    background:
      - name: heater_pid            # a PID loop on a heater, every 0.1 s
        period: 0.1
        regulation:
          heater: {ambient: 20, gain: 1.0, tau: 2.0}   # a simulated heater (SimHeater), or
                                                       # the name of an object with
                                                       # read_temperature() and set_power()
          setpoint: 30
          ramp_rate: 2              # kelvin per second (none: jump)
          kp: 4
          ki: 1
      - name: monitor               # the values of objects, every second
        period: 1.0
        monitor: [simct, m1]        # counter controllers (read_all), motors, heaters

The server starts them in its own task group (:class:`~blissng.session._background.
BackgroundTasks`) after its sessions, exposes each loop or monitor in every session's
namespace under its name (``heater_pid.setpoint = 40``), and they go on when a session closes.
A bad entry is reported with its file, line and field; it never stops the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from blissng.config import Config, ConfigError
from blissng.devices import Movable, RegulationLoop

from ._background import Monitor

log = logging.getLogger("blissng.background")


class RegulationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    heater: str | dict[str, Any] = Field(
        description="an object name, or the parameters of a simulated heater"
    )
    setpoint: float = 20.0
    ramp_rate: float | None = None
    kp: float
    ki: float = 0.0
    kd: float = 0.0
    output_limits: tuple[float, float] = (0.0, 100.0)


class BackgroundSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    period: float = Field(gt=0)
    regulation: RegulationSpec | None = None
    monitor: list[str] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> BackgroundSpec:
        if (self.regulation is None) == (self.monitor is None):
            raise ValueError(f"background task {self.name!r} needs one of regulation: or monitor:")
        return self


def background_specs(config: Config) -> list[BackgroundSpec]:
    """The validated ``background:`` section (errors name the file, line and field)."""
    section = config.section("background")
    if section is None:
        return []
    return section.validated_items(BackgroundSpec, "a list of tasks (- name: ... period: ...)")


def build_regulation(name: str, spec: RegulationSpec, config: Config) -> RegulationLoop:
    heater: Any
    if isinstance(spec.heater, str):
        heater = config.get(spec.heater)
    else:  # imported here: a beamline's server imports no simulator (test_lazy_faces.py)
        from blissng.sim import SimHeater

        heater = SimHeater(f"{name}_heater", **spec.heater)
    loop = RegulationLoop(
        name,
        heater.read_temperature,
        heater.set_power,
        kp=spec.kp,
        ki=spec.ki,
        kd=spec.kd,
        setpoint=spec.setpoint,
        ramp_rate=spec.ramp_rate,
        output_limits=spec.output_limits,
    )
    loop.heater = heater  # type: ignore[attr-defined]
    return loop


async def read_values(objects: Mapping[str, Any]) -> dict[str, float]:
    """One value per counter, motor or heater of ``objects`` (what a monitor records)."""
    values: dict[str, float] = {}
    for name, obj in objects.items():
        if isinstance(obj, Movable):
            values[name] = float(await obj.read_position())
        elif hasattr(obj, "read_temperature"):
            values[name] = float(await obj.read_temperature())
        elif hasattr(obj, "read_all") and hasattr(obj, "counters"):
            counters = list(obj.counters)
            for counter, value in zip(counters, await obj.read_all(counters), strict=True):
                values[f"{name}:{counter.name}"] = float(value)
        else:
            raise TypeError(f"monitor cannot read {name!r} ({type(obj).__name__})")
    return values


def build_monitor(name: str, names: list[str], config: Config) -> Monitor:
    objects = {n: config.get(n) for n in names}
    return Monitor(name, lambda: read_values(objects))


def start_configured_tasks(server: Any, config: Config) -> dict[str, Any]:
    """Start the section's tasks in ``server.background``; returns {name: loop or monitor}.

    Each built object is exposed in every session's namespace. A task that cannot be built
    is logged and skipped."""
    started: dict[str, Any] = {}
    try:
        specs = background_specs(config)
    except ConfigError as exc:
        log.error("%s", exc)
        return started
    for spec in specs:
        try:
            obj: Any
            if spec.regulation is not None:
                obj = build_regulation(spec.name, spec.regulation, config)
            else:
                obj = build_monitor(spec.name, spec.monitor or [], config)
            server.background.start(spec.name, obj.step, period=spec.period, owner="config")
        except Exception as exc:
            log.error("background task %s not started: %s: %s", spec.name, type(exc).__name__, exc)
            continue
        started[spec.name] = obj
        for session in server.sessions.values():
            session.namespace.setdefault(spec.name, obj)
    server.background_objects = started
    return started
