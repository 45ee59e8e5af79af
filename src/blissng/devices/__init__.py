"""Devices: motors, counters, detectors, and the base classes of their controllers.

Pure abstractions, no protocol: instrument clients live in ``blissng.sim`` (simulated) or in
beamline packages. docs/devices.md explains how to write a controller for a new instrument.
"""

from .axis import Axis, AxisParameters, AxisSettings, AxisState, EncoderParameters, Motion
from .calc import CalcAxis, CalcController, Slit
from .controller import AxisController, AxisControllerParameters
from .counters import (
    CalcCounterController,
    Counter,
    CounterController,
    SamplingCounter,
    SamplingCounterController,
    SamplingMode,
)
from .errors import (
    AcquisitionError,
    AxisBusyError,
    AxisFaultError,
    DeviceError,
    EncoderMismatchError,
    LimitError,
    LimitSwitchError,
    UnknownDeviceError,
)
from .group import Group
from .triggered import (
    FRAME_REFERENCE_DTYPE,
    Camera,
    IntegratingCounterController,
    Mca,
    TriggeredController,
)

__all__ = [
    "FRAME_REFERENCE_DTYPE",
    "AcquisitionError",
    "Axis",
    "AxisBusyError",
    "AxisController",
    "AxisControllerParameters",
    "AxisFaultError",
    "AxisParameters",
    "AxisSettings",
    "AxisState",
    "CalcAxis",
    "CalcController",
    "CalcCounterController",
    "Camera",
    "Counter",
    "CounterController",
    "DeviceError",
    "EncoderMismatchError",
    "EncoderParameters",
    "Group",
    "IntegratingCounterController",
    "LimitError",
    "LimitSwitchError",
    "Mca",
    "Motion",
    "SamplingCounter",
    "SamplingCounterController",
    "SamplingMode",
    "Slit",
    "TriggeredController",
    "UnknownDeviceError",
]
