"""Serial-line connections (pyserial-asyncio): real ports and pseudo-terminals alike."""

from __future__ import annotations

import asyncio
from typing import Any

import serial
import serial_asyncio

from blissng.comm._connection import Connection


class SerialConnection(Connection):
    """A device on a serial line: ``SerialConnection("motctrl", "/dev/ttyS0", baudrate=9600)``.

    ``serial_options`` go to :class:`serial.Serial` (bytesize, parity, stopbits, rtscts,
    exclusive, ...). Runs on the asyncio backend (pyserial-asyncio is asyncio-only).

    After a request timed out (or was cancelled), its reply may still arrive on the line, even
    after the port is reopened: pass ``expect=`` to ``write_readline`` so that such a late
    reply is recognised and skipped.
    """

    REOPEN_DISCARDS_LATE_REPLIES = False

    def __init__(
        self,
        name: str,
        port: str,
        *,
        baudrate: int = 9600,
        serial_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("eol", b"\r\n")
        options.setdefault("write_eol", b"\r")
        super().__init__(name, **options)
        self.port = str(port)
        self.baudrate = baudrate
        self.serial_options = dict(serial_options or {})
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def address(self) -> str:
        return f"serial://{self.port}"

    async def _transport_open(self) -> None:
        try:
            self._reader, self._writer = await serial_asyncio.open_serial_connection(
                url=self.port, baudrate=self.baudrate, **self.serial_options
            )
        except serial.SerialException as exc:
            raise OSError(str(exc)) from exc

    async def _transport_send(self, data: bytes) -> None:
        assert self._writer is not None
        if self._writer.transport.is_closing():
            raise ConnectionResetError("serial line closed")
        self._writer.write(data)
        await self._writer.drain()

    async def _transport_receive(self) -> bytes:
        assert self._reader is not None
        try:
            return await self._reader.read(65536)
        except serial.SerialException as exc:
            raise OSError(str(exc)) from exc

    async def _transport_close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, serial.SerialException):
                pass

    def _transport_lost(self) -> bool:
        # pyserial-asyncio reads continuously: a broken line has already closed the transport.
        if self._writer is None or self._reader is None:
            return True
        return (
            self._writer.transport.is_closing()
            or self._reader.exception() is not None
            or self._reader.at_eof()
        )
