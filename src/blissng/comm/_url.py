"""Connections from address URLs, as configuration files and the simulators write them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from blissng.comm._connection import Connection
from blissng.comm._serial import SerialConnection
from blissng.comm._tcp import TcpConnection, UnixConnection


def connection_from_url(url: str, *, name: str, **options: Any) -> Connection:
    """An unopened connection to ``url`` (opened by its first call):

    - ``tcp://host:port`` or ``host:port`` -> :class:`TcpConnection`
    - ``unix:///path/to.sock`` -> :class:`UnixConnection`
    - ``serial:///dev/ttyS0`` or a bare ``/dev/...`` path -> :class:`SerialConnection`

    ``options`` go to the connection (timeout, eol, write_eol, encoding, baudrate, ...).
    """
    if url.startswith("/"):
        return SerialConnection(name, url, **options)
    if "://" not in url:
        host, sep, port = url.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(
                f"device {name!r}: cannot understand address {url!r}; use tcp://host:port, "
                "unix:///path or serial:///dev/path"
            )
        return TcpConnection(name, host or "localhost", int(port), **options)
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"device {name!r}: {url!r} needs a host and a port (tcp://host:port)")
        return TcpConnection(name, parts.hostname, parts.port, **options)
    if parts.scheme == "unix":
        return UnixConnection(name, parts.netloc + parts.path, **options)
    if parts.scheme in ("serial", "pty"):
        return SerialConnection(name, parts.netloc + parts.path, **options)
    raise ValueError(
        f"device {name!r}: unknown scheme {parts.scheme!r} in {url!r}; "
        "use tcp://, unix:// or serial://"
    )
