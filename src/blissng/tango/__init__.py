"""Tango devices in blissng (the ``blissng[tango]`` extra: pytango's asyncio API).

- :class:`TangoMotor` (``class: TangoMotor``): a Tango motor device as an axis;
  :class:`TangoMotorController` for several; :class:`TangoAttributeAxis` scans any writable
  attribute like a motor.
- :class:`TangoCounterController`: attributes of a device as counters (scalars with sampling
  modes, spectra as 1D counters).
- :class:`TangoDevice`: the proxy wrapper they share (timeouts, errors, events, reconnection);
  :func:`tango_proxy` / :func:`async_tango_proxy` give shell users a plain pytango proxy.
- Errors: :class:`TangoError` (a ``DeviceError`` naming the object, the device, the attribute
  or command and Tango's reason), :class:`TangoTimeout`, :class:`TangoNotInstalled`.

This package imports without pytango; using a class without it raises
:class:`TangoNotInstalled`, which says ``pip install 'blissng[tango]'``. See
docs/control-systems.md.
"""

from ._counters import TangoCounterController
from ._device import DEFAULT_TIMEOUT, TangoDevice, async_tango_proxy, full_name, tango_proxy
from ._errors import TangoError, TangoNotInstalled, TangoTimeout
from ._motor import (
    TangoAttributeAxis,
    TangoAxis,
    TangoAxisParameters,
    TangoMotor,
    TangoMotorController,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "TangoAttributeAxis",
    "TangoAxis",
    "TangoAxisParameters",
    "TangoCounterController",
    "TangoDevice",
    "TangoError",
    "TangoMotor",
    "TangoMotorController",
    "TangoNotInstalled",
    "TangoTimeout",
    "async_tango_proxy",
    "full_name",
    "tango_proxy",
]
