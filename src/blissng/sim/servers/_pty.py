"""Serving a simulator on a pseudo-terminal, like an instrument on a serial line.

Clients open ``<directory>/<name>.tty``, a symlink to the current ``/dev/pts/N``, with any
serial library. The host keeps the slave end open itself, so clients may come and go without
hanging the line up. A simulated disconnect closes the master (every client's line hangs up)
and creates a new pty behind the same symlink: reopening the path reconnects, as with a
USB-serial adapter plugged back in.
"""

from __future__ import annotations

import errno
import os
import tty
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from blissng.sim.servers._channels import Channel

if TYPE_CHECKING:
    from blissng.sim.servers._base import Simulator


class PtyChannel(Channel):
    """The master side of a pty."""

    def __init__(self, master: int) -> None:
        self.fd = master
        self.closed = False

    async def receive(self) -> bytes:
        while not self.closed:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                try:
                    await anyio.wait_readable(self.fd)
                except (anyio.ClosedResourceError, OSError):
                    return b""
                continue
            except OSError:
                return b""
            return data
        return b""

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closed:
            try:
                sent = os.write(self.fd, view)
            except BlockingIOError:
                with anyio.move_on_after(1.0):  # nobody reads the line: drop the reply
                    await anyio.wait_writable(self.fd)
                    continue
                return
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):
                    return
                raise
            view = view[sent:]

    def close_now(self) -> None:
        if not self.closed:
            self.closed = True
            anyio.notify_closing(self.fd)
            os.close(self.fd)

    async def aclose(self) -> None:
        self.close_now()


class PtyServer:
    """The pty of one simulator and its replacement on a simulated disconnect."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.link = sim.host.directory / f"{sim.name}.tty"
        self.channel: PtyChannel | None = None
        self._next: tuple[int, int] | None = None

    def _open_new(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        temporary = self.link.with_name(self.link.name + ".new")
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        temporary.symlink_to(os.ttyname(slave))
        os.replace(temporary, self.link)  # atomic: the path always leads to a live pty
        self._next = (master, slave)

    def replace(self) -> None:
        """Hang up every client: a new pty behind the same path first, then close the old."""
        self._open_new()
        if self.channel is not None:
            self.channel.close_now()

    async def run(self, task_status: TaskStatus[None]) -> None:
        self.sim.path = str(self.link)
        self.sim.url = f"serial://{self.link}"
        self._open_new()
        task_status.started()
        while True:
            assert self._next is not None
            master, slave = self._next
            self.channel = PtyChannel(master)
            try:
                await self.sim.serve_client(self.channel)
            finally:
                os.close(slave)
            if self._next[0] == master:  # closed without a replacement ready: make one
                self._open_new()
