"""blissng.comm: talking to instruments.

- :class:`Connection` (``TcpConnection``, ``UnixConnection``, ``SerialConnection``, or
  :func:`connection_from_url`): one request/response API with timeouts, a lock per connection,
  reconnection and a per-device trace (:func:`debugon` / :func:`debugoff`).
- :func:`blocking`: run a blocking call in a worker thread, one at a time per device, with a
  timeout, failing fast while a timed-out call still runs.
- Errors: :class:`CommunicationError` and its subclasses :class:`CommTimeout`,
  :class:`ProtocolError`, :class:`ConnectionLost`, :class:`DeviceBusy`, :class:`ErrorReply`.
"""

from blissng.comm._blocking import blocking, stuck_calls
from blissng.comm._connection import Connection
from blissng.comm._errors import (
    CommTimeout,
    CommunicationError,
    ConnectionLost,
    DeviceBusy,
    ErrorReply,
    ProtocolError,
)
from blissng.comm._serial import SerialConnection
from blissng.comm._tcp import TcpConnection, UnixConnection
from blissng.comm._trace import debugoff, debugon
from blissng.comm._url import connection_from_url

from ._addresses import (
    SCHEME,
    UnknownAddress,
    env_name,
    lookup_address,
    register_simulators,
    registered_simulators,
    unregister_simulators,
)

__all__ = [
    "SCHEME",
    "CommTimeout",
    "CommunicationError",
    "Connection",
    "ConnectionLost",
    "DeviceBusy",
    "ErrorReply",
    "ProtocolError",
    "SerialConnection",
    "TcpConnection",
    "UnixConnection",
    "UnknownAddress",
    "blocking",
    "connection_from_url",
    "debugoff",
    "debugon",
    "env_name",
    "lookup_address",
    "register_simulators",
    "registered_simulators",
    "stuck_calls",
    "unregister_simulators",
]
