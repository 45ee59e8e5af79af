"""Motors over EPICS: ``EpicsMotor`` (a motor record), ``EpicsMotorController`` (several)
and ``EpicsAxis`` (any settable PV scanned like a motor).

What maps to what (docs/control-systems.md):

==============================  ==============================================================
motor record                    blissng
==============================  ==============================================================
put ``VAL`` (no callback)       ``start_one``: the move starts
``RBV``                         the position (steps; ``steps_per_unit`` 1: record units)
``DMOV`` 0                      MOVING (DMOV goes 1 -> 0 -> 1 around a move)
``MSTA`` PLUS_LS / MINUS_LS     LIMPOS / LIMNEG at rest (``HLS``/``LLS``)
``MSTA`` PROBLEM                FAULT
put ``STOP`` = 1                ``stop`` (a cancelled move, Ctrl-C)
``VELO``; ``ACCL``              velocity; acceleration = VELO / ACCL (ACCL: seconds to
                                velocity), read at connection when the YAML leaves them out
``HLM`` / ``LLM``               software limits (dial), unless the YAML gives them; none when
                                both are 0, as in the record
``EGU``                         the unit
==============================  ==============================================================

Monitors on ``DMOV``, ``RBV`` and ``MSTA`` replace polling: a moving axis waits for the next
update (``wait_motion_update``) and reads ``DMOV`` itself only after ``liveness`` seconds
without one. A disconnection (the IOC stopped) makes a moving axis fail at once with an error
naming the PV; Channel Access reconnects by itself when the IOC is back, and the monitors
resume, so the next command works.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import anyio
from pydantic import Field

from blissng.devices import (
    Axis,
    AxisController,
    AxisControllerParameters,
    AxisParameters,
    AxisState,
    Motion,
    Pushed,
    single_axis,
)

from ._errors import EpicsDisconnected, EpicsError
from ._pv import DEFAULT_TIMEOUT, EpicsPV, pv_for

MSTA_PLUS_LS = 1 << 2
MSTA_PROBLEM = 1 << 9
MSTA_MINUS_LS = 1 << 13

MONITORED = ("DMOV", "RBV", "MSTA")


class EpicsAxisParameters(AxisParameters):
    """One motor record (a child of ``EpicsMotorController``)."""

    pv: str = Field(description="the record's name, e.g. BL:m1 (or pva://BL:m1)")
    monitors: bool = Field(True, description="follow DMOV, RBV, MSTA with monitors")
    liveness: float = Field(1.0, gt=0, description="s without an update before DMOV is read")
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, description="seconds, every operation")


class EpicsMotorControllerParameters(AxisControllerParameters):
    axes: list[EpicsAxisParameters] = Field(default_factory=list)  # type: ignore[assignment]


class EpicsMotorParameters(EpicsAxisParameters):
    """``class: EpicsMotor``: one motor record, configured at the top level."""

    name: str = ""


@dataclasses.dataclass
class _Record:
    """The fields of one motor record, and what its monitors pushed."""

    fields: dict[str, EpicsPV]
    pushed: Pushed = dataclasses.field(default_factory=Pushed)
    fresh: set[str] = dataclasses.field(default_factory=set)
    dmov_updates: int = 0

    def __getitem__(self, field: str) -> EpicsPV:
        return self.fields[field]


class EpicsAxis(Axis):
    """An axis over EPICS; ``close()`` releases its PVs (an ``EpicsMotor`` object is an axis)."""

    async def close(self) -> None:
        await self.controller.close()


class EpicsMotorController(AxisController):
    """Motor records as axes; see the module docstring."""

    AxisParameters: ClassVar[type[AxisParameters]] = EpicsAxisParameters
    Parameters: ClassVar[type[AxisControllerParameters]] = EpicsMotorControllerParameters
    axis_class: ClassVar[type[Axis]] = EpicsAxis
    FIELDS = ("VAL", "RBV", "DMOV", "MOVN", "STOP", "VELO", "ACCL", "HLM", "LLM", "EGU", "MSTA")

    def __init__(self, name: str, params: AxisControllerParameters | None = None, *, settings=None):
        super().__init__(name, params, settings=settings)
        for axis in self.axes.values():
            p = self._p(axis)
            fields = {
                field: pv_for(axis.name, p.pv if field == "VAL" else f"{p.pv}.{field}",
                              timeout=p.timeout)
                for field in self.FIELDS
            }  # fmt: skip
            axis.controller_data["epics"] = _Record(fields)

    @staticmethod
    def _p(axis: Axis) -> EpicsAxisParameters:
        return axis.params  # type: ignore[return-value]

    def record(self, axis: Axis) -> _Record:
        record: _Record = axis.controller_data["epics"]
        return record

    # ------------------------------------------------------------------ connection

    async def initialize_axis(self, axis: Axis) -> None:
        record = self.record(axis)
        spu = axis.steps_per_unit
        velo = float(await record["VELO"].get())
        accl = float(await record["ACCL"].get())
        hlm, llm = float(await record["HLM"].get()), float(await record["LLM"].get())
        defaults: dict[str, float | None] = {}
        if velo > 0:
            defaults["velocity"] = velo / abs(spu)
            if accl > 0:
                defaults["acceleration"] = velo / accl / abs(spu)
        if hlm != llm:  # both 0: no limits, as in the record
            dials = [llm / spu, hlm / spu]
            if spu < 0:
                dials.reverse()
            defaults["low_limit"], defaults["high_limit"] = dials
        axis.use_controller_defaults(**defaults)
        if axis.unit is None:
            unit = str(await record["EGU"].get()).strip()
            axis.unit = unit or None
        if self._p(axis).monitors:
            self._monitor(record)

    def _monitor(self, record: _Record) -> None:
        pushed = record.pushed
        keys = {"DMOV": "dmov", "RBV": "position", "MSTA": "msta"}

        def updater(field: str) -> Any:
            key = keys[field]

            def update(value: Any) -> None:
                if field == "DMOV":
                    record.dmov_updates += 1
                pushed.update(key, value)
                record.fresh.add(key)
                if not pushed.live and record.fresh == set(keys.values()):
                    pushed.live = True  # every monitor delivered (again): trust them
                    pushed.error = None

            return update

        def failed(error: EpicsError) -> None:
            record.fresh.clear()
            pushed.fail(error)

        for field in MONITORED:
            record[field].monitor(updater(field), failed)

    async def close(self) -> None:
        """Release the connections also when ``connect`` failed half-way (a PV that never
        connected still has a channel searching for it)."""
        await super().close()
        await self.finalize()

    async def finalize(self) -> None:
        for axis in self.axes.values():
            for pv in self.record(axis).fields.values():
                await pv.close()

    # ------------------------------------------------------------------ reading

    def _check_connected(self, record: _Record) -> None:
        error = record.pushed.error
        if isinstance(error, EpicsDisconnected):
            raise EpicsDisconnected(error.device, error.pv, "waiting for", error.reason)

    async def read_position(self, axis: Axis) -> float:
        record = self.record(axis)
        pushed = record.pushed
        if pushed.live and not pushed.get("dmov", 1):
            return float(pushed.values["position"])  # moving: the monitor's latest
        return float(await record["RBV"].get())

    async def state(self, axis: Axis) -> AxisState:
        record = self.record(axis)
        pushed = record.pushed
        if pushed.live:
            return self._map(pushed.values["dmov"], pushed.values["msta"])
        if record.pushed.error is not None and axis.is_moving:
            self._check_connected(record)
        return self._map(await record["DMOV"].get(), await record["MSTA"].get())

    @staticmethod
    def _map(dmov: Any, msta: Any) -> AxisState:
        if not int(dmov):
            return AxisState.MOVING
        status = int(msta)
        if status & MSTA_PLUS_LS:
            return AxisState.LIMPOS
        if status & MSTA_MINUS_LS:
            return AxisState.LIMNEG
        if status & MSTA_PROBLEM:
            return AxisState.FAULT
        return AxisState.READY

    # ------------------------------------------------------------------ motion

    async def start_one(self, motion: Motion) -> None:
        record = self.record(motion.axis)
        if record.pushed.error is not None:  # disconnected since: connect afresh
            record.pushed.error = None
            for pv in record.fields.values():
                pv.renew()
            if self._p(motion.axis).monitors:
                self._monitor(record)
                await self._until_live(record, self._p(motion.axis).timeout)
        before = record.dmov_updates
        await record["VAL"].put(float(motion.target_steps))
        if record.pushed.live and record.dmov_updates == before:
            # The record posts DMOV 0 then 1 for this put; until the 0 arrives, it moves.
            record.pushed.values["dmov"] = 0

    @staticmethod
    async def _until_live(record: _Record, timeout: float) -> None:
        """Monitors subscribed again first deliver the values from before the move (DMOV 1):
        the move starts once they are in, or the old 1 would end it at once (seen after an
        IOC restart: the move to 0.2 returned at 0.011). Without them in ``timeout`` s the
        record is read instead, as before."""
        with anyio.move_on_after(timeout):
            while not record.pushed.live:
                await record.pushed.wait_change(timeout)

    async def wait_motion_update(self, axis: Axis) -> None:
        record = self.record(axis)
        pushed = record.pushed
        if not pushed.live:
            self._check_connected(record)
            await super().wait_motion_update(axis)
            return
        if not await pushed.wait_change(self._p(axis).liveness):
            before = record.dmov_updates
            dmov = await record["DMOV"].get()  # quiet for a while: is it still there?
            if record.dmov_updates == before:
                pushed.values["dmov"] = dmov
        self._check_connected(record)

    async def stop(self, axis: Axis) -> None:
        await self.record(axis)["STOP"].put(1)

    async def set_velocity(self, axis: Axis, steps_per_second: float) -> None:
        record = self.record(axis)
        await record["VELO"].put(float(steps_per_second))
        await record["ACCL"].put(float(steps_per_second) / self._acceleration_steps(axis))

    async def set_acceleration(self, axis: Axis, steps_per_second2: float) -> None:
        velocity = axis.velocity * abs(axis.steps_per_unit)
        await self.record(axis)["ACCL"].put(velocity / float(steps_per_second2))

    @staticmethod
    def _acceleration_steps(axis: Axis) -> float:
        return axis.acceleration * abs(axis.steps_per_unit)


class EpicsMotor(EpicsMotorController):
    """``class: EpicsMotor``: one motor record as one axis (the object is the axis)."""

    Parameters: ClassVar[type[Any]] = EpicsMotorParameters

    @classmethod
    def from_config(cls, name: str, params: Any, context: Any) -> Any:
        return single_axis(EpicsMotorController, EpicsAxisParameters, name, params, context)


# ------------------------------------------------------------------------------ settable PVs


class EpicsSettableParameters(AxisParameters):
    name: str = ""
    pv: str = Field(description="the PV to write (a setpoint)")
    readback: str | None = Field(None, description="read the position here (default: pv)")
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)


class EpicsSettableController(AxisController):
    """One settable PV as an axis: a put with completion callback is the move."""

    AxisParameters: ClassVar[type[AxisParameters]] = EpicsSettableParameters
    axis_class: ClassVar[type[Axis]] = EpicsAxis

    def _pvs(self, axis: Axis) -> tuple[EpicsPV, EpicsPV]:
        pvs: tuple[EpicsPV, EpicsPV] | None = axis.controller_data.get("pvs")
        if pvs is None:
            p: EpicsSettableParameters = axis.params  # type: ignore[assignment]
            setpoint = pv_for(axis.name, p.pv, timeout=p.timeout)
            readback = pv_for(axis.name, p.readback, timeout=p.timeout) if p.readback else setpoint
            pvs = axis.controller_data["pvs"] = (setpoint, readback)
        return pvs

    async def initialize_axis(self, axis: Axis) -> None:
        await self._pvs(axis)[1].get()  # connects, or says which PV is missing

    async def read_position(self, axis: Axis) -> float:
        return float(await self._pvs(axis)[1].get())

    async def state(self, axis: Axis) -> AxisState:
        return AxisState.READY

    async def start_one(self, motion: Motion) -> None:
        await self._pvs(motion.axis)[0].put(float(motion.target_steps), wait=True)

    async def stop(self, axis: Axis) -> None:
        """A put has no motion to stop."""

    async def close(self) -> None:
        await super().close()
        await self.finalize()

    async def finalize(self) -> None:
        for axis in self.axes.values():
            for pv in set(self._pvs(axis)):
                await pv.close()


class EpicsSettableAxis(EpicsSettableController):
    """``class: EpicsSettableAxis``: a settable PV scanned like a motor (the object is the
    axis)."""

    Parameters: ClassVar[type[Any]] = EpicsSettableParameters

    @classmethod
    def from_config(cls, name: str, params: Any, context: Any) -> Any:
        return single_axis(EpicsSettableController, EpicsSettableParameters, name, params, context)


__all__ = [
    "EpicsAxis",
    "EpicsAxisParameters",
    "EpicsMotor",
    "EpicsMotorController",
    "EpicsSettableAxis",
]
