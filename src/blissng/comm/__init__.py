"""blissng.comm: talking to instruments.

- :class:`Connection` (``TcpConnection``, ``UnixConnection``, ``SerialConnection``, or
  :func:`connection_from_url`): one request/response API with timeouts, a lock per connection,
  reconnection and a per-device trace (:func:`debugon` / :func:`debugoff`).
- :func:`blocking`: run a blocking call in a worker thread, one at a time per device, with a
  timeout, failing fast while a timed-out call still runs.
- Errors: :class:`CommunicationError` and its subclasses :class:`CommTimeout`,
  :class:`ProtocolError`, :class:`ConnectionLost`, :class:`DeviceBusy`, :class:`DeviceError`.
"""

from blissng.comm.blocking import blocking, stuck_calls
from blissng.comm.connection import Connection
from blissng.comm.errors import (
    CommTimeout,
    CommunicationError,
    ConnectionLost,
    DeviceBusy,
    DeviceError,
    ProtocolError,
)
from blissng.comm.serial import SerialConnection
from blissng.comm.tcp import TcpConnection, UnixConnection
from blissng.comm.trace import debugoff, debugon
from blissng.comm.url import connection_from_url

__all__ = [
    "CommTimeout",
    "CommunicationError",
    "Connection",
    "ConnectionLost",
    "DeviceBusy",
    "DeviceError",
    "ProtocolError",
    "SerialConnection",
    "TcpConnection",
    "UnixConnection",
    "blocking",
    "connection_from_url",
    "debugoff",
    "debugon",
    "stuck_calls",
]
