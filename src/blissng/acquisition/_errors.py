"""Errors of the acquisition chain.

A failure anywhere in a chain cancels the whole scan; the error that reaches the user names the
device and the lifecycle phase it failed in, because "read timed out" alone does not say which of
ten controllers to look at.
"""

from __future__ import annotations

from blissng.errors import BlissngError


class AcquisitionError(BlissngError):
    """A device of the chain failed: ``AcquisitionError: diode_ctrl failed in read: ...``.

    ``device`` is the node's name (the device's name for slaves and masters over one device),
    ``phase`` one of ``prepare``, ``start``, ``trigger``, ``read``, ``reading``, ``wait_ready``,
    ``stop`` or ``preset <phase>``. The original exception is ``__cause__``.
    """

    def __init__(self, device: str, phase: str, cause: BaseException | str) -> None:
        self.device = device
        self.phase = phase
        if isinstance(cause, BaseException):
            detail = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        else:
            detail = cause
        self.detail = detail
        super().__init__(f"{device} failed in {phase}: {detail}")


class ChainConfigurationError(BlissngError, ValueError):
    """The chain is malformed (no top master, a node added twice, inconsistent npoints)."""
