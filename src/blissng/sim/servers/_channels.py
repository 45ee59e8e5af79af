"""The byte channel a simulator serves a client on: a stream (TCP, unix socket) or a pty
(``blissng.sim.servers._pty``); the simulators see only :class:`Channel`."""

from __future__ import annotations

import abc

import anyio
from anyio.abc import ByteStream


class Channel(abc.ABC):
    @abc.abstractmethod
    async def receive(self) -> bytes:
        """Next chunk; b"" at end of stream."""

    @abc.abstractmethod
    async def send(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...


class StreamChannel(Channel):
    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream

    async def receive(self) -> bytes:
        try:
            return await self.stream.receive(65536)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            return b""

    async def send(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass  # the client went away; its reader notices

    async def aclose(self) -> None:
        await self.stream.aclose()
