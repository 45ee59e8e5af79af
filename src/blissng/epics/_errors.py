"""EPICS errors as blissng device errors: each names the object and the PV."""

from __future__ import annotations

from blissng.devices import DeviceError

EXTRA = "epics"


class EpicsNotInstalled(DeviceError, ImportError):
    """aioca or p4p is missing: says which extra to install."""

    def __init__(self, device: str, package: str, cause: BaseException | None = None) -> None:
        detail = f" ({cause})" if cause is not None else ""
        super().__init__(
            device,
            f"needs {package}, which is not installed{detail}: pip install 'blissng[{EXTRA}]'",
        )


class EpicsError(DeviceError):
    """A Channel Access or PV Access operation failed: names the object, what was asked, the
    PV and the reason."""

    def __init__(self, device: str, pv: str, what: str, reason: str) -> None:
        self.pv = pv
        self.what = what
        self.reason = reason
        super().__init__(device, f"{what} {pv} failed: {reason}")


class EpicsTimeout(EpicsError, TimeoutError):
    """No connection or no answer within the timeout."""


class EpicsDisconnected(EpicsError):
    """The PV's server went away (an IOC stopped or restarting)."""


__all__ = ["EpicsDisconnected", "EpicsError", "EpicsNotInstalled", "EpicsTimeout"]
