"""EPICS devices in blissng (the ``blissng[epics]`` extra): Channel Access through aioca
(libca from the epicscorelibs wheel) and PV Access through p4p's asyncio client.

- :class:`EpicsMotor` (``class: EpicsMotor``, ``pv: BL:m1``): a motor record as an axis,
  followed through monitors; :class:`EpicsMotorController` for several.
- :class:`EpicsSettableAxis`: any settable PV scanned like a motor.
- :class:`EpicsCounterController`: PVs as counters (scalars with sampling modes, waveforms as
  1D counters).
- PV names are Channel Access unless prefixed ``pva://`` (``ca://`` is accepted).
- Errors: :class:`EpicsError` (a ``DeviceError`` naming the object, what was asked and the
  PV), :class:`EpicsTimeout`, :class:`EpicsDisconnected`, :class:`EpicsNotInstalled`.

Clients are configured by the standard EPICS environment variables (``EPICS_CA_ADDR_LIST``,
``EPICS_PVA_ADDR_LIST``...). This package imports without aioca or p4p; using a class without
them raises :class:`EpicsNotInstalled`, which says ``pip install 'blissng[epics]'``. See
docs/control-systems.md.
"""

from ._counters import EpicsCounterController
from ._errors import EpicsDisconnected, EpicsError, EpicsNotInstalled, EpicsTimeout
from ._motor import EpicsAxis, EpicsMotor, EpicsMotorController, EpicsSettableAxis
from ._pv import CaPV, EpicsPV, PvaPV, pv_for

__all__ = [
    "CaPV",
    "EpicsAxis",
    "EpicsCounterController",
    "EpicsDisconnected",
    "EpicsError",
    "EpicsMotor",
    "EpicsMotorController",
    "EpicsNotInstalled",
    "EpicsPV",
    "EpicsSettableAxis",
    "EpicsTimeout",
    "PvaPV",
    "pv_for",
]
