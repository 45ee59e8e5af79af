"""``sim://NAME`` addresses for the simulated instruments' clients: the registry is
:mod:`blissng.comm`'s (``register_simulators``, shared with the Tango and EPICS layers); this
module adds the device error the clients raise."""

from __future__ import annotations

from blissng.comm import UnknownAddress, lookup_address


def resolve_address(url: str, *, device: str) -> str:
    """The real address of ``url`` (see :func:`blissng.comm.lookup_address`); a
    ``DeviceError`` naming ``device`` if ``sim://NAME`` is not running."""
    try:
        return lookup_address(url)
    except UnknownAddress as exc:
        from blissng.devices import DeviceError

        raise DeviceError(device, str(exc)) from None
