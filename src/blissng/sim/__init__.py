"""Simulated instruments: their clients (ordinary device classes) and the servers they talk to.

- Clients, configured like real devices (``class: SimSerialMotorController``...):
  :class:`MockupController` (motors in process), :class:`SimSerialMotorController` (the
  serial motor controller, the worked example of docs/devices.md), :class:`SimCounterController`
  and :class:`SimScalerController` (peaks in process), :class:`SimTcpScaler`,
  :class:`SimScalerRates`, :class:`SimMca`, :class:`SimCamera`, :class:`SimTriggerBox`,
  :class:`SimGoodDevice`, :class:`SimBadDevice` (over TCP, pty or Unix socket),
  :class:`SimHeater` (a regulation loop in process). They find their server by a
  ``sim://NAME`` address (:func:`resolve_address`; the registry is :mod:`blissng.comm`'s).
- Simulator servers, real servers in processes of their own (docs/sim-protocols.md):
  :func:`open_sim_host` / :func:`start_sim_host` run a host of a :class:`HostSpec`
  (:func:`standard_spec`, :func:`bad_device_spec`, :func:`demo_spec`) and return a
  :class:`SimHost` (addresses, faults, reset). ``python -m blissng.sim.servers --spec SPEC``
  runs a host by hand.
- The demo beamline's simulators: :func:`start_simulators` / :func:`run_simulators` start
  them all and register their addresses; :func:`demo_config_dir` is its configuration.
- The simulated Tango device server (:class:`TangoSimServer`, :func:`open_tango_sim`,
  :func:`run_tango_sim`) and EPICS IOC (:class:`EpicsSimIoc`, :func:`shared_ioc`): their
  processes import pytango, caproto and p4p (the ``tango`` and ``epics`` extras); this
  process only starts them. The Tango devices themselves (``SimTangoMotor``,
  ``SimTangoCounter``) are not offered: they import pytango and live only in the server's
  process.

The face is lazy (PEP 562, a module ``__getattr__``): each name imports its module when it is
first asked for. Every simulator server process (``python -m blissng.sim.servers``,
``..._tango_server``, ``..._epics_ioc``) imports this face before its own module, and must not
pay for the clients (the device layer, pyserial, the comm layer) nor find its own module
imported by the face before running it; a configuration naming ``class: SimMca`` loads the
detector clients alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blissng.faces import lazy_names

if TYPE_CHECKING:  # what the names are, for type checkers; at run time __getattr__ loads them
    from ._addresses import resolve_address
    from ._client import SimClient, SimCommandError
    from ._demo import (
        SIMULATORS,
        demo_config_dir,
        run_simulators,
        simulator_environment,
        start_simulators,
    )
    from ._detectors import SimAddress, SimCamera, SimMca, SimScalerRates, SimTcpScaler
    from ._epics_ioc import EpicsSimIoc, shared_ioc
    from ._heater import SimHeater
    from ._motors import MockupController
    from ._peak_counters import SimCounterController, SimScalerController
    from ._serial_motors import SimSerialMotorController
    from ._streaming import SimBadDevice, SimGoodDevice
    from ._tango_server import TangoSimServer, open_tango_sim, run_tango_sim
    from ._trigger import SimTriggerBox
    from .servers._launcher import SimControlError, SimHost, SimInfo, open_sim_host, start_sim_host
    from .servers._presets import (
        BAD_DEVICE_FIFO,
        BAD_DEVICE_RATE,
        DemoSimulators,
        bad_device_spec,
        demo_spec,
        open_demo_simulators,
        standard_spec,
        start_demo_simulators,
    )
    from .servers._spec import (
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

_MODULES = {  # the private module that defines each name of __all__
    "resolve_address": "._addresses",
    "SimClient": "._client",
    "SimCommandError": "._client",
    "SIMULATORS": "._demo",
    "demo_config_dir": "._demo",
    "run_simulators": "._demo",
    "simulator_environment": "._demo",
    "start_simulators": "._demo",
    "SimAddress": "._detectors",
    "SimCamera": "._detectors",
    "SimMca": "._detectors",
    "SimScalerRates": "._detectors",
    "SimTcpScaler": "._detectors",
    "EpicsSimIoc": "._epics_ioc",
    "shared_ioc": "._epics_ioc",
    "SimHeater": "._heater",
    "MockupController": "._motors",
    "SimCounterController": "._peak_counters",
    "SimScalerController": "._peak_counters",
    "SimSerialMotorController": "._serial_motors",
    "SimBadDevice": "._streaming",
    "SimGoodDevice": "._streaming",
    "TangoSimServer": "._tango_server",
    "open_tango_sim": "._tango_server",
    "run_tango_sim": "._tango_server",
    "SimTriggerBox": "._trigger",
    "SimControlError": ".servers._launcher",
    "SimHost": ".servers._launcher",
    "SimInfo": ".servers._launcher",
    "open_sim_host": ".servers._launcher",
    "start_sim_host": ".servers._launcher",
    "BAD_DEVICE_FIFO": ".servers._presets",
    "BAD_DEVICE_RATE": ".servers._presets",
    "DemoSimulators": ".servers._presets",
    "bad_device_spec": ".servers._presets",
    "demo_spec": ".servers._presets",
    "open_demo_simulators": ".servers._presets",
    "standard_spec": ".servers._presets",
    "start_demo_simulators": ".servers._presets",
    "AxisSpec": ".servers._spec",
    "BadDeviceSpec": ".servers._spec",
    "CameraSpec": ".servers._spec",
    "GoodDeviceSpec": ".servers._spec",
    "HostSpec": ".servers._spec",
    "McaSpec": ".servers._spec",
    "MotorControllerSpec": ".servers._spec",
    "PeakSpec": ".servers._spec",
    "ScalerChannelSpec": ".servers._spec",
    "ScalerSpec": ".servers._spec",
    "TriggerBoxSpec": ".servers._spec",
}

__all__ = [
    "BAD_DEVICE_FIFO",
    "BAD_DEVICE_RATE",
    "SIMULATORS",
    "AxisSpec",
    "BadDeviceSpec",
    "CameraSpec",
    "DemoSimulators",
    "EpicsSimIoc",
    "GoodDeviceSpec",
    "HostSpec",
    "McaSpec",
    "MockupController",
    "MotorControllerSpec",
    "PeakSpec",
    "ScalerChannelSpec",
    "ScalerSpec",
    "SimAddress",
    "SimBadDevice",
    "SimCamera",
    "SimClient",
    "SimCommandError",
    "SimControlError",
    "SimCounterController",
    "SimGoodDevice",
    "SimHeater",
    "SimHost",
    "SimInfo",
    "SimMca",
    "SimScalerController",
    "SimScalerRates",
    "SimSerialMotorController",
    "SimTcpScaler",
    "SimTriggerBox",
    "TangoSimServer",
    "TriggerBoxSpec",
    "bad_device_spec",
    "demo_config_dir",
    "demo_spec",
    "open_demo_simulators",
    "open_sim_host",
    "open_tango_sim",
    "resolve_address",
    "run_simulators",
    "run_tango_sim",
    "shared_ioc",
    "simulator_environment",
    "standard_spec",
    "start_demo_simulators",
    "start_sim_host",
    "start_simulators",
]


__getattr__, __dir__ = lazy_names(__name__, _MODULES)
