"""Short class names usable as ``class:`` in the configuration.

A plain mapping of strings (short name -> ``"package.module:Class"``) so that the config layer
imports no layer above it: the class is imported only when an object of it is built. Layers
above add their classes here with a one-line entry, e.g.::

    "SimSerialMotorController": "blissng.sim:SimSerialMotorController",

Any class can also be named by its import path directly in the YAML.
"""

from __future__ import annotations

CLASSES: dict[str, str] = {
    # devices (owner: devices)
    "Slit": "blissng.devices:Slit",
    "CalcCounterController": "blissng.devices:CalcCounterController",
    "MockupController": "blissng.sim:MockupController",
    "SimCounterController": "blissng.sim:SimCounterController",
    "SimScalerController": "blissng.sim:SimScalerController",
    "SimSerialMotorController": "blissng.sim:SimSerialMotorController",
    "SimTcpScaler": "blissng.sim:SimTcpScaler",
    "SimScalerRates": "blissng.sim:SimScalerRates",
    "SimMca": "blissng.sim:SimMca",
    "SimCamera": "blissng.sim:SimCamera",
    "SimTriggerBox": "blissng.sim:SimTriggerBox",
    "SimGoodDevice": "blissng.sim:SimGoodDevice",
    "SimBadDevice": "blissng.sim:SimBadDevice",
    # control systems (owner: controls; extras blissng[tango], blissng[epics])
    "TangoMotor": "blissng.tango:TangoMotor",
    "TangoMotorController": "blissng.tango:TangoMotorController",
    "TangoAttributeAxis": "blissng.tango:TangoAttributeAxis",
    "TangoCounterController": "blissng.tango:TangoCounterController",
    "EpicsMotor": "blissng.epics:EpicsMotor",
    "EpicsMotorController": "blissng.epics:EpicsMotorController",
    "EpicsSettableAxis": "blissng.epics:EpicsSettableAxis",
    "EpicsCounterController": "blissng.epics:EpicsCounterController",
    "MeasurementGroup": "blissng.scans:MeasurementGroup",  # owner: scans
}
