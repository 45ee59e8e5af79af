"""Errors of the communication layer: each names the device, the command and what happened."""

from __future__ import annotations

from blissng.errors import BlissngError


def _show(command: bytes | str | None) -> str:
    if command is None:
        return ""
    if isinstance(command, bytes):
        text = repr(command)
    else:
        text = repr(command)
    return text if len(text) <= 80 else text[:77] + "..."


class CommunicationError(BlissngError):
    """Talking to a device failed. ``device`` is its name, ``command`` what was sent (if any)."""

    def __init__(self, device: str, message: str, *, command: bytes | str | None = None) -> None:
        self.device = device
        self.command = command
        self.detail = message
        where = f" (command {_show(command)})" if command is not None else ""
        super().__init__(f"device {device!r}: {message}{where}")


class CommTimeout(CommunicationError, TimeoutError):
    """No (complete) reply within the timeout: names the device, the command and the time waited."""

    def __init__(
        self,
        device: str,
        waited: float,
        *,
        command: bytes | str | None = None,
        what: str = "no reply",
        timeout: float | None = None,
    ) -> None:
        self.waited = waited
        self.timeout = timeout
        limit = f" (timeout {timeout:g} s)" if timeout is not None else ""
        super().__init__(device, f"{what} after {waited:.3f} s{limit}", command=command)


class ProtocolError(CommunicationError):
    """The device answered something that is not a valid reply (garbage, bad encoding, ...)."""


class ConnectionLost(CommunicationError):
    """The connection closed under us; the next call reconnects."""


class DeviceBusy(CommunicationError):
    """A previous blocking call timed out and still runs in its thread: failing fast until it
    returns, so that the device is never called twice at once."""


class ErrorReply(CommunicationError):
    """The device answered with an error reply (for controllers to raise)."""
