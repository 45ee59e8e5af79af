"""A Python client of a running blissng server, so scripts use the server, not the hardware.

The server owns the devices (most accept one connection); a script, a GUI or another program
talks to it through its API (:class:`blissng.web.Api`)::

    from blissng.client import Client, connect

    async with Client.from_connection_file() as client:         # the local server
        await client.run("demo", "mv(m1, 1)")
        result = await client.run("demo", "ascan(m1, 0, 1, 10, 0.1)")
        scan = await client.scan(result)                          # a blissng.data ScanView
        print(await scan["diode"].get())  ...
        print(await client.positions("demo"))

    with connect() as client:                                     # the same, blocking
        client.run("demo", "wa()")

``Client(url, token)`` or :meth:`Client.from_connection_file` (the ``web.json`` that
``blissng serve``/``demo`` writes in its state directory, readable by its user only).
Commands run in the session as if typed at a console (their output appears in its consoles);
:meth:`Client.run` waits for the end and raises :class:`CommandFailed` with the session's
message when the command fails or is cancelled.
"""

from ._client import (
    Client,
    ClientError,
    CommandFailed,
    SyncClient,
    connect,
    default_connection_file,
)

__all__ = [
    "Client",
    "ClientError",
    "CommandFailed",
    "SyncClient",
    "connect",
    "default_connection_file",
]
