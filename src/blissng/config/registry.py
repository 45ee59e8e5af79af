"""Short class names usable as ``class:`` in the configuration.

A plain mapping of strings (short name -> ``"package.module:Class"``) so that the config layer
imports no layer above it: the class is imported only when an object of it is built. Layers
above add their classes here with a one-line entry, e.g.::

    "SimMotorController": "blissng.sim.motors:SimMotorController",

Any class can also be named by its import path directly in the YAML.
"""

from __future__ import annotations

CLASSES: dict[str, str] = {
    # devices (owner: devices)
    "Slit": "blissng.devices.calc:Slit",
    "CalcCounterController": "blissng.devices.counters:CalcCounterController",
    "MockupController": "blissng.sim.motors:MockupController",
    "SimCounterController": "blissng.sim.counters:SimCounterController",
    "SimScalerController": "blissng.sim.counters:SimScalerController",
    "SimSerialMotorController": "blissng.sim.serial_motors:SimSerialMotorController",
    "SimTcpScaler": "blissng.sim.detectors:SimTcpScaler",
    "SimScalerRates": "blissng.sim.detectors:SimScalerRates",
    "SimMca": "blissng.sim.detectors:SimMca",
    "SimCamera": "blissng.sim.detectors:SimCamera",
    "SimTriggerBox": "blissng.sim.trigger:SimTriggerBox",
    "SimGoodDevice": "blissng.sim.streaming:SimGoodDevice",
    "SimBadDevice": "blissng.sim.streaming:SimBadDevice",
    "MeasurementGroup": "blissng.scans.measurement_group:MeasurementGroup",  # owner: scans
}
