"""The part every simulated instrument shares: serving clients line by line, error replies,
fault injection (silent, garbage, slow, disconnect) and the control operations.

A simulator is one object in a sim host process. It listens on TCP (port 0, read back), a unix
socket or a pseudo-terminal, and handles each client's requests in order, like an instrument's
firmware. Handlers are plain methods registered in ``self.commands``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup, TaskStatus

from blissng.errors import BlissngError
from blissng.sim.servers._channels import Channel, StreamChannel
from blissng.sim.servers._pty import PtyServer

if TYPE_CHECKING:
    from blissng.sim.servers._host import SimHostServer

FAULT_MODES = ("none", "silent", "garbage", "slow")


class SimError(BlissngError):
    """An error reply: ``ERR <code> <message>``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def garbage_bytes(rng: random.Random) -> bytes:
    """8-24 random bytes in 0x80-0xFF: never ASCII, never a line terminator."""
    return bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randrange(8, 25)))


def arg_int(args: list[str], index: int, what: str) -> int:
    try:
        return int(args[index])
    except IndexError:
        raise SimError(2, f"missing {what}") from None
    except ValueError:
        try:
            value = float(args[index])
        except ValueError:
            raise SimError(2, f"{what} {args[index]!r} is not a number") from None
        if not value.is_integer():
            raise SimError(2, f"{what} {args[index]!r} is not an integer") from None
        return int(value)


def arg_float(args: list[str], index: int, what: str) -> float:
    try:
        return float(args[index])
    except IndexError:
        raise SimError(2, f"missing {what}") from None
    except ValueError:
        raise SimError(2, f"{what} {args[index]!r} is not a number") from None


def expect_args(args: list[str], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(args) <= high:
        wanted = str(low) if low == high else f"{low} to {high}"
        raise SimError(2, f"expected {wanted} arguments, got {len(args)}")


class Client:
    """One connected client: its byte channel and the simulator's per-connection state."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.state: dict[str, Any] = {}


Handler = Callable[[list[str], Client], Any]


class Simulator:
    """Base of every simulator: faults, control ops, listening and the request loop."""

    kind = "simulator"
    reply_eol = b"\n"

    def __init__(self, name: str, spec: Any, host: SimHostServer) -> None:
        self.name = name
        self.spec = spec
        self.host = host
        self.rng = random.Random(None if host.spec.seed is None else f"{host.spec.seed}{name}")
        self.fault_mode = "none"
        self.fault_delay = 0.5
        self.clients: set[Client] = set()
        self.commands: dict[str, Handler] = {}
        self.url = ""
        self.path: str | None = None
        self.address: tuple[str, int] | None = None
        self.requests = 0
        self.refused = 0
        self._task_group: TaskGroup | None = None
        self._pty: Any = None

    # -- life cycle --------------------------------------------------------------------------

    @property
    def task_group(self) -> TaskGroup:
        assert self._task_group is not None, "simulator not started"
        return self._task_group

    async def serve(self, *, task_status: TaskStatus[None]) -> None:
        """Listen and serve until cancelled (started by the host)."""
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            listen = self.spec.listen
            if listen == "tcp":
                listener: Any = await anyio.create_tcp_listener(
                    local_host="127.0.0.1", local_port=0
                )
                port = listener.extra(SocketAttribute.local_port)
                self.address = ("127.0.0.1", port)
                self.url = f"tcp://127.0.0.1:{port}"
            elif listen == "unix":
                self.path = str(self.host.directory / f"{self.name}.sock")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                listener = await anyio.create_unix_listener(self.path)
                self.url = f"unix://{self.path}"
            else:
                await self.serve_pty(tg, task_status)
                return
            tg.start_soon(listener.serve, self._accept_stream)
            task_status.started()

    async def serve_pty(self, tg: TaskGroup, task_status: TaskStatus[None]) -> None:
        self._pty = PtyServer(self)
        await self._pty.run(task_status)

    async def _accept_stream(self, stream: ByteStream) -> None:
        channel = StreamChannel(stream)
        if self.spec.max_clients is not None and len(self.clients) >= self.spec.max_clients:
            self.refused += 1
            await channel.send(b"ERR 9 busy: another client is connected" + self.reply_eol)
            await channel.aclose()
            return
        await self.serve_client(channel)

    async def serve_client(self, channel: Channel) -> None:
        """Read request lines and answer them in order, until the client goes away."""
        client = Client(channel)
        self.clients.add(client)
        buffer = bytearray()
        try:
            while True:
                chunk = await channel.receive()
                if not chunk:
                    return
                buffer += chunk
                while True:
                    ends = [i for i in (buffer.find(b"\n"), buffer.find(b"\r")) if i >= 0]
                    if not ends:
                        break
                    end = min(ends)
                    raw = bytes(buffer[:end])
                    del buffer[: end + 1]
                    if raw.strip():
                        await self.process(raw, client)
                if len(buffer) > 65536:
                    buffer.clear()
                    await channel.send(b"ERR 2 request too long" + self.reply_eol)
        finally:
            self.clients.discard(client)
            self.client_gone(client)
            with anyio.CancelScope(shield=True):
                await channel.aclose()

    def client_gone(self, client: Client) -> None:
        """A client disconnected (subclasses stop what it started)."""

    async def process(self, raw: bytes, client: Client) -> None:
        self.requests += 1
        if self.fault_mode == "silent":
            return
        if self.fault_mode == "garbage":
            await client.channel.send(garbage_bytes(self.rng) + self.reply_eol)
            return
        if self.fault_mode == "slow":
            await anyio.sleep(self.fault_delay)
        reply = await self.execute(raw, client)
        if reply is not None:
            await client.channel.send(reply)

    async def execute(self, raw: bytes, client: Client) -> bytes | None:
        """Run one request; the reply bytes (terminated), None for no reply."""
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            return self._error(2, "request is not ASCII")
        words = text.split()
        keyword, args = words[0].upper(), words[1:]
        handler = self.commands.get(keyword)
        if handler is None:
            return self._error(1, f"unknown command {words[0]!r}")
        try:
            result = handler(args, client)
            if inspect.isawaitable(result):
                result = await result
        except SimError as exc:
            return self._error(exc.code, exc.message)
        if result is None:
            return None
        if isinstance(result, bytes):
            return result
        return result.encode("ascii") + self.reply_eol

    def _error(self, code: int, message: str) -> bytes:
        return f"ERR {code} {message}".encode("ascii", "replace") + self.reply_eol

    # -- control operations (the control socket calls ``control_<op>``) ----------------------

    async def control_fault(self, mode: str, delay: float | None = None) -> dict[str, Any]:
        if mode == "disconnect":
            return await self.control_disconnect()
        if mode not in FAULT_MODES:
            raise ValueError(
                f"{self.name}: unknown fault mode {mode!r}; use one of "
                f"{', '.join(FAULT_MODES)} or 'disconnect'"
            )
        self.fault_mode = mode
        if delay is not None:
            self.fault_delay = float(delay)
        return {"mode": self.fault_mode, "delay": self.fault_delay}

    async def control_disconnect(self) -> dict[str, Any]:
        n = len(self.clients)
        await self.disconnect_all()
        return {"disconnected": n}

    async def disconnect_all(self) -> None:
        """Close every client connection before returning (so the caller's next command is
        sure to find its connection closed)."""
        if self._pty is not None:
            self._pty.replace()
            return
        for client in list(self.clients):
            await client.channel.aclose()

    async def control_reset(self) -> None:
        self.fault_mode = "none"
        self.fault_delay = 0.5
        self.reset()
        await self.disconnect_all()

    def reset(self) -> None:
        """Back to the spec's state (subclasses)."""

    def control_stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "clients": len(self.clients),
            "requests": self.requests,
            "refused": self.refused,
            "fault": self.fault_mode,
            **self.stats(),
        }

    def stats(self) -> dict[str, Any]:
        return {}

    def info(self) -> dict[str, Any]:
        host, port = self.address if self.address else (None, None)
        return {
            "name": self.name,
            "kind": self.kind,
            "url": self.url,
            "path": self.path,
            "host": host,
            "port": port,
        }

    def on_pulses(self, times: Any, width: float) -> None:
        """Trigger pulses from the trigger box of this host at ``times`` (a sorted array of
        instants on the host's clock; detectors override)."""


def now() -> float:
    """The simulators' clock: CLOCK_MONOTONIC, the same in every process of the machine."""
    return time.monotonic()
