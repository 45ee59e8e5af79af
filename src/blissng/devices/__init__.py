"""Devices: motors, counters, detectors, and the base classes of their controllers.

Pure abstractions, no protocol: instrument clients live in ``blissng.sim`` (simulated) or in
beamline packages. docs/devices.md explains how to write a controller for a new instrument.
"""

from ._axis import Axis, AxisParameters, AxisSettings, AxisState, EncoderParameters, Motion
from ._calc import CalcAxis, CalcAxisParameters, CalcController, Slit
from ._calc_counters import CalcCounterController, CalcOutputParameters
from ._controller import (
    AxisController,
    AxisControllerParameters,
    check_unique_names,
    settings_of,
    single_axis,
)
from ._counters import (
    STATS_FIELDS,
    Counter,
    CounterController,
    SamplingControllerParameters,
    SamplingCounter,
    SamplingCounterController,
    SamplingCounterParameters,
    SamplingMode,
    sampling_counter,
)
from ._errors import (
    AxisBusyError,
    AxisFaultError,
    DetectorError,
    DeviceError,
    EncoderMismatchError,
    LimitError,
    LimitSwitchError,
    UnknownDeviceError,
)
from ._group import Group
from ._protocols import (
    Acquirable,
    AcquisitionParameters,
    LatchingTriggerSource,
    Movable,
    PulseTrain,
    ScanAxis,
    TriggerMode,
    TriggerSource,
)
from ._pushed import Pushed
from ._regulation import RegulationLoop
from ._triggered import (
    FRAME_REFERENCE_DTYPE,
    Camera,
    CameraParameters,
    IntegratingCounterController,
    Mca,
    McaParameters,
    TriggeredController,
)

__all__ = [
    "FRAME_REFERENCE_DTYPE",
    "STATS_FIELDS",
    "Acquirable",
    "AcquisitionParameters",
    "Axis",
    "AxisBusyError",
    "AxisController",
    "AxisControllerParameters",
    "AxisFaultError",
    "AxisParameters",
    "AxisSettings",
    "AxisState",
    "CalcAxis",
    "CalcAxisParameters",
    "CalcController",
    "CalcCounterController",
    "CalcOutputParameters",
    "Camera",
    "CameraParameters",
    "Counter",
    "CounterController",
    "DetectorError",
    "DeviceError",
    "EncoderMismatchError",
    "EncoderParameters",
    "Group",
    "IntegratingCounterController",
    "LatchingTriggerSource",
    "LimitError",
    "LimitSwitchError",
    "Mca",
    "McaParameters",
    "Motion",
    "Movable",
    "PulseTrain",
    "Pushed",
    "RegulationLoop",
    "SamplingControllerParameters",
    "SamplingCounter",
    "SamplingCounterController",
    "SamplingCounterParameters",
    "SamplingMode",
    "ScanAxis",
    "Slit",
    "TriggerMode",
    "TriggerSource",
    "TriggeredController",
    "UnknownDeviceError",
    "check_unique_names",
    "sampling_counter",
    "settings_of",
    "single_axis",
]
