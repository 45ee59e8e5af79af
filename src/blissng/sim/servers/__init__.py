"""Simulated instruments as real servers (a serial motor controller on a pty, TCP instruments,
a bad device in its own process), for tests, benchmarks and the demo. Protocols, process
layout and fault injection: docs/sim-protocols.md."""

from blissng.sim.servers.launcher import (
    SimControlError,
    SimHost,
    SimInfo,
    open_sim_host,
    start_sim_host,
)
from blissng.sim.servers.presets import (
    BAD_DEVICE_FIFO,
    BAD_DEVICE_RATE,
    DemoSimulators,
    bad_device_spec,
    demo_spec,
    open_demo_simulators,
    standard_spec,
    start_demo_simulators,
)
from blissng.sim.servers.spec import (
    AxisSpec,
    BadDeviceSpec,
    CameraSpec,
    GoodDeviceSpec,
    HostSpec,
    McaSpec,
    MotorControllerSpec,
    PeakSpec,
    ScalerChannelSpec,
    ScalerSpec,
    TriggerBoxSpec,
)

__all__ = [
    "BAD_DEVICE_FIFO",
    "BAD_DEVICE_RATE",
    "AxisSpec",
    "BadDeviceSpec",
    "CameraSpec",
    "DemoSimulators",
    "GoodDeviceSpec",
    "HostSpec",
    "McaSpec",
    "MotorControllerSpec",
    "PeakSpec",
    "ScalerChannelSpec",
    "ScalerSpec",
    "SimControlError",
    "SimHost",
    "SimInfo",
    "TriggerBoxSpec",
    "bad_device_spec",
    "demo_spec",
    "open_demo_simulators",
    "open_sim_host",
    "standard_spec",
    "start_demo_simulators",
    "start_sim_host",
]
