"""Device errors: each names the object and says what went wrong and what to do.

Users see these as one friendly line at the prompt, so the message carries everything:
the device name, the value refused, the limits or tolerance, and the way out.
"""

from __future__ import annotations

from blissng.errors import BlissngError


class DeviceError(BlissngError, RuntimeError):
    """Base of every device error. ``device`` is the name of the object concerned."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device


class LimitError(DeviceError, ValueError):
    """A move was refused because its target lies outside the software limits."""


class LimitSwitchError(DeviceError):
    """A motion ended on a hardware limit switch."""


class EncoderMismatchError(DeviceError):
    """After a move, the encoder disagrees with the target by more than the tolerance."""


class AxisFaultError(DeviceError):
    """The controller reports the axis in FAULT, or the axis is DISABLED."""


class AxisBusyError(DeviceError):
    """A second move was asked of an axis that is still moving."""


class UnknownDeviceError(DeviceError, KeyError):
    """A controller was asked for a child (axis, counter) it does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ParameterError(DeviceError, ValueError):
    """A parameter given to a device has the wrong type or value."""


class DetectorError(DeviceError):
    """A counter controller or detector refused its acquisition parameters or did not deliver
    (the chain reports it as an ``AcquisitionError`` naming the phase)."""
