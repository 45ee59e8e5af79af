"""Tango errors as blissng device errors: each names the object, the Tango device, the
attribute or command, and Tango's reason."""

from __future__ import annotations

from typing import Any

from blissng.devices import DeviceError

EXTRA = "tango"


class TangoNotInstalled(DeviceError, ImportError):
    """pytango is missing: says which extra to install."""

    def __init__(self, device: str, cause: BaseException | None = None) -> None:
        detail = f" ({cause})" if cause is not None else ""
        super().__init__(
            device,
            f"needs pytango, which is not installed{detail}: pip install 'blissng[{EXTRA}]'",
        )


class TangoError(DeviceError):
    """A Tango call failed (``DevFailed``): names the device, what was asked and the reason.

    ``reason`` and ``desc`` are those of the first error of Tango's stack (the origin);
    ``tango_name`` the device's full name; ``what`` "reading Position", "command Stop"...
    """

    def __init__(self, device: str, tango_name: str, what: str, reason: str, desc: str) -> None:
        self.tango_name = tango_name
        self.what = what
        self.reason = reason
        self.desc = desc
        super().__init__(device, f"{what} of {tango_name} failed: {reason}: {desc}")


class TangoTimeout(TangoError, TimeoutError):
    """The device did not answer within the timeout."""


# Reasons that say the device cannot be reached (server down, restarting, not exported).
CONNECTION_REASONS = frozenset(
    {
        "API_CorbaException",
        "API_CantConnectToDevice",
        "API_DeviceNotExported",
        "API_ServerNotRunning",
        "API_CommunicationFailed",
        "API_DeviceNotDefined",
    }
)


def from_dev_failed(device: str, tango_name: str, what: str, exc: Any) -> TangoError:
    """A :class:`TangoError` from a ``tango.DevFailed``: the origin's reason and description
    (``desc`` on one line)."""
    errors = getattr(exc, "args", ()) or ()
    first = errors[0] if errors else None
    reason = str(getattr(first, "reason", "") or type(exc).__name__)
    desc = " ".join(str(getattr(first, "desc", "") or exc).split())
    if any(getattr(e, "reason", "") == "API_DeviceTimedOut" for e in errors):
        return TangoTimeout(device, tango_name, what, "API_DeviceTimedOut", desc)
    if "TRANSIENT_CallTimedout" in desc:  # the ORB's timeout: the server did not answer
        return TangoTimeout(device, tango_name, what, reason, desc)
    return TangoError(device, tango_name, what, reason, desc)


__all__ = ["CONNECTION_REASONS", "TangoError", "TangoNotInstalled", "TangoTimeout"]
