"""TCP and unix-socket connections (anyio socket streams)."""

from __future__ import annotations

import socket
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream

from blissng.comm._connection import Connection


class _SocketConnection(Connection):
    """A Connection over an anyio socket stream."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self._stream: SocketStream | None = None
        self._peek: tuple[int, int, int] = (0, 0, -1)

    async def _connect_stream(self) -> SocketStream:
        raise NotImplementedError

    async def _transport_open(self) -> None:
        self._stream = await self._connect_stream()
        raw = self._stream.extra(SocketAttribute.raw_socket)  # asyncio's TransportSocket
        self._peek = (raw.family, raw.type, raw.fileno())

    async def _transport_send(self, data: bytes) -> None:
        assert self._stream is not None
        await self._stream.send(data)

    async def _transport_receive(self) -> bytes:
        assert self._stream is not None
        try:
            return await self._stream.receive(1 << 18)  # what asyncio read at once
        except anyio.EndOfStream:
            return b""

    async def _transport_close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    def _transport_lost(self) -> bool:
        # While idle nobody reads the socket (anyio pauses reading between receives), so the
        # kernel still holds the peer's end-of-stream: peek at it without consuming anything.
        if self._stream is None:
            return True
        family, kind, fd = self._peek
        sock = socket.socket(family, kind, fileno=fd)  # a view on asyncio's socket, no dup
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            sock.detach()  # the fd stays asyncio's
        return data == b""


class TcpConnection(_SocketConnection):
    """A device on a TCP port: ``TcpConnection("scaler", "host", 5000, timeout=1.0)``."""

    def __init__(self, name: str, host: str, port: int, **options: Any) -> None:
        super().__init__(name, **options)
        self.host = host
        self.port = int(port)

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    async def _connect_stream(self) -> SocketStream:
        stream = await anyio.connect_tcp(self.host, self.port)
        sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stream


class UnixConnection(_SocketConnection):
    """A device on a unix socket: ``UnixConnection("bad", "/tmp/bad.sock")``."""

    def __init__(self, name: str, path: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.path = str(path)

    @property
    def address(self) -> str:
        return f"unix://{self.path}"

    async def _connect_stream(self) -> SocketStream:
        return await anyio.connect_unix(self.path)
