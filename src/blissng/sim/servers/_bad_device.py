"""A simulated "bad device": streams many tiny unbuffered packets on a wall-clock schedule and
drops what its reader does not take in time, counting every dropped packet.

Model: packets are produced at ``rate`` per second (packet k due at t0 + k / rate, sequence
numbers count every produced packet) into a send queue of ``fifo`` packets. The output stage
holds one write at a time, like a UART's shift register: on a unix socket the device hands the
next write to the line only once the reader has taken all of the previous one (the socket's
unread bytes, ``SIOCOUTQ``, are zero). On time, a write is one tiny packet; a backlog goes out
as one write of up to 2 kB. A packet produced while the queue is full is dropped. So a reader
may stall ``(fifo + 1) / rate`` seconds without loss, whatever the kernel's buffer sizes, and
loses data beyond that. (Packets that became due while this process itself was asleep too long,
on a busy machine, are excused from the limit: the simulator's lateness is not blamed on the
reader.) (On TCP, where unread bytes cannot be seen, the kernel buffers add to
the queue.) The socket is driven with raw non-blocking sends (no asyncio transport buffer hides
the back-pressure). It runs in a host process of its own, so its schedule does not depend on
the reader's event loop.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import math
import os
import socket
import struct
import termios
import time
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from blissng.sim.servers._base import (
    Client,
    SimError,
    Simulator,
    arg_float,
    arg_int,
    garbage_bytes,
)
from blissng.sim.servers._channels import Channel
from blissng.sim.servers._spec import BadDeviceSpec

PACKET_SIZE = 25
MAX_WRITE = 2048  # bytes per write: what the smallest socket buffer takes in one piece
LATE = 0.005  # seconds: this process woke up this late, it was starved (not the reader)


def packet(seq: int) -> bytes:
    return b"%010d %+.6e\n" % (seq, math.sin(seq / 100.0))


class RawSocketChannel(Channel):
    """A connected non-blocking socket, read and written with raw system calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False
        self.unix = sock.family == socket.AF_UNIX

    def line_busy(self) -> bool:
        """True while the reader has not taken everything written (unix sockets only)."""
        if not self.unix or self.closed:
            return False
        unread = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        return struct.unpack("i", unread)[0] > 0

    async def receive(self) -> bytes:
        while not self.closed:
            try:
                return self.sock.recv(65536)
            except BlockingIOError:
                try:
                    await anyio.wait_readable(self.sock)
                except (anyio.ClosedResourceError, OSError):
                    return b""
            except OSError:
                return b""
        return b""

    def send_now(self, data: bytes) -> int:
        """Send what the socket takes now without waiting; the number of bytes sent."""
        try:
            return self.sock.send(data, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.EBADF, errno.ENOTCONN):
                raise ConnectionResetError(str(exc)) from exc
            raise

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closed:
            try:
                sent = self.sock.send(view, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                await anyio.wait_writable(self.sock)
                continue
            except OSError:
                return
            view = view[sent:]

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            anyio.notify_closing(self.sock)
            self.sock.close()


class BadDeviceSim(Simulator):
    kind = "bad_device"

    def __init__(self, name: str, spec: BadDeviceSpec, host: Any) -> None:
        super().__init__(name, spec, host)
        self.rate = spec.rate
        self.fifo = spec.fifo
        self.produced = self.sent = self.dropped = 0
        self.max_late = 0.0  # how far behind its schedule the device ever was (s)
        self._partial = False  # the queue's head is the rest of a partly sent packet
        self._excused = 0  # packets over the FIFO's limit due to this process's own lateness
        self.queue: collections.deque[bytes] = collections.deque()
        self.streaming: Client | None = None
        self._scope: anyio.CancelScope | None = None
        self._stopped = anyio.Event()
        self.commands = {
            "*IDN?": lambda a, c: "SIMBAD 1.0",
            "START": self.c_start,
            "STOP": self.c_stop,
            "?DROP": lambda a, c: str(self.dropped),
        }

    async def serve(self, *, task_status: TaskStatus[None]) -> None:
        if self.spec.listen == "pty":
            raise ValueError(f"{self.name}: the bad device serves on tcp or unix, not pty")
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            if self.spec.listen == "unix":
                self.path = str(self.host.directory / f"{self.name}.sock")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(self.path)
                self.url = f"unix://{self.path}"
            else:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", 0))
                port = listener.getsockname()[1]
                self.address = ("127.0.0.1", port)
                self.url = f"tcp://127.0.0.1:{port}"
            listener.listen(16)
            listener.setblocking(False)
            task_status.started()
            try:
                await self._accept_loop(listener, tg)
            finally:
                listener.close()

    async def _accept_loop(self, listener: socket.socket, tg: TaskGroup) -> None:
        while True:
            await anyio.wait_readable(listener)
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                continue
            sock.setblocking(False)
            # The smallest send buffer the kernel allows: the device's queue is the buffer.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
            if sock.family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            channel = RawSocketChannel(sock)
            if self.spec.max_clients is not None and len(self.clients) >= self.spec.max_clients:
                self.refused += 1
                await channel.send(b"ERR 9 busy: another client is connected\n")
                await channel.aclose()
                continue
            tg.start_soon(self.serve_client, channel)

    # -- commands ----------------------------------------------------------------------------

    def c_start(self, args: list[str], client: Client) -> None:
        if len(args) > 2:
            raise SimError(2, "expected START [rate [fifo]]")
        if self.streaming is not None:
            raise SimError(10, "already streaming")
        rate = arg_float(args, 0, "rate") if args else self.spec.rate
        fifo = arg_int(args, 1, "fifo") if len(args) > 1 else self.spec.fifo
        if rate <= 0 or fifo < 0:
            raise SimError(8, "rate must be > 0 and fifo >= 0")
        self.rate, self.fifo = rate, fifo
        self.produced = self.sent = self.dropped = 0
        self.max_late = 0.0
        self._partial = False
        self._excused = 0
        self.queue.clear()
        self.streaming = client
        scope = anyio.CancelScope()
        self._scope = scope
        self._stopped = anyio.Event()
        self.task_group.start_soon(self._stream, client, scope)
        return None  # the stream task answers OK before the first packet

    async def c_stop(self, args: list[str], client: Client) -> str:
        await self._halt()
        if isinstance(client.channel, RawSocketChannel):
            while self.queue:
                await client.channel.send(self.queue.popleft())
                self.sent += 1
        return f"END {self.produced} {self.dropped}"

    async def _halt(self) -> None:
        scope, self._scope = self._scope, None
        if scope is not None:
            scope.cancel()
            await self._stopped.wait()
        self.streaming = None

    def client_gone(self, client: Client) -> None:
        if self.streaming is client and self._scope is not None:
            self._scope.cancel()
            self._scope = None
            self.streaming = None

    async def _stream(self, client: Client, scope: anyio.CancelScope) -> None:
        channel = client.channel
        assert isinstance(channel, RawSocketChannel)
        try:
            with scope:
                await channel.send(b"OK\n")
                t0 = planned = time.monotonic()
                seq = 0
                while True:
                    now = time.monotonic()
                    late = now - planned
                    self.max_late = max(self.max_late, late)
                    if late > LATE:
                        # This process slept too long (a busy machine): the packets that became
                        # due meanwhile would have gone out one by one. They are excused from
                        # the FIFO's limit, so the simulator's lateness is not blamed on the
                        # reader.
                        self._excused += int(late * self.rate)
                    due = min(int((now - t0) * self.rate) + 1, seq + 1000)  # never hog the loop
                    while seq < due:
                        data = self._make(seq)
                        if data is not None:
                            self.queue.append(data)
                        seq += 1
                    self._service(channel)
                    now = time.monotonic()
                    wait = t0 + seq / self.rate - now
                    if wait > 0:
                        # A backlog: look again soon whether the reader took the last write.
                        wait = min(wait, 0.001) if self.queue else wait
                        planned = now + wait
                        await anyio.sleep(wait)
                    else:
                        planned = now
                        await anyio.lowlevel.checkpoint()
        except ConnectionResetError:
            pass
        finally:
            self._stopped.set()

    def _make(self, seq: int) -> bytes | None:
        self.produced += 1
        if self.fault_mode == "silent":
            self.dropped += 1
            return None
        return garbage_bytes(self.rng) + b"\n" if self.fault_mode == "garbage" else packet(seq)

    def _service(self, channel: RawSocketChannel) -> None:
        """Send what the line takes; drop the newest packets a full FIFO cannot hold."""
        sent_before = self.sent
        self._flush(channel)
        self._excused = max(0, self._excused - (self.sent - sent_before))
        keep = max(self.fifo + self._excused, 1 if self._partial else 0)
        while len(self.queue) > keep:
            self.queue.pop()
            self.dropped += 1

    def _flush(self, channel: RawSocketChannel) -> bool:
        """Move queued packets to the socket; True if the queue is now empty.

        A backlog drains like a FIFO into a line: as one stream of bytes (up to ``MAX_WRITE``
        per write), so a reader that comes back gets the backlog in few reads."""
        while self.queue:
            if channel.line_busy():
                return False
            batch: list[bytes] = []
            size = 0
            for item in self.queue:
                if batch and size + len(item) > MAX_WRITE:
                    break
                batch.append(item)
                size += len(item)
            sent = channel.send_now(b"".join(batch) if len(batch) > 1 else batch[0])
            for item in batch:
                if sent >= len(item):
                    sent -= len(item)
                    self.queue.popleft()
                    self.sent += 1
                    self._partial = False
                    continue
                if sent:
                    self.queue[0] = item[sent:]
                    self._partial = True
                return False
        return True

    # -- control -----------------------------------------------------------------------------

    def control_configure(self, rate: float | None = None, fifo: int | None = None) -> None:
        if rate is not None:
            self.spec = self.spec.model_copy(update={"rate": float(rate)})
        if fifo is not None:
            self.spec = self.spec.model_copy(update={"fifo": int(fifo)})

    def reset(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        self.streaming = None
        self.spec = self.host.spec.simulators[self.name]
        self.rate, self.fifo = self.spec.rate, self.spec.fifo
        self.produced = self.sent = self.dropped = 0
        self.max_late = 0.0
        self._partial = False
        self._excused = 0
        self.queue.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "produced": self.produced,
            "sent": self.sent,
            "dropped": self.dropped,
            "queued": len(self.queue),
            "max_late": self.max_late,
            "streaming": self.streaming is not None,
            "rate": self.rate,
            "fifo": self.fifo,
        }
