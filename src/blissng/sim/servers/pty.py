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
from anyio.abc import TaskGroup, TaskStatus

from blissng.sim.servers.base import Channel

if TYPE_CHECKING:
    from blissng.sim.servers.base import Simulator


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

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            anyio.notify_closing(self.fd)
            os.close(self.fd)


async def serve_pty(sim: Simulator, tg: TaskGroup, task_status: TaskStatus[None]) -> None:
    link = sim.host.directory / f"{sim.name}.tty"
    sim.path = str(link)
    sim.url = f"serial://{link}"
    started = False
    while True:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        temporary = link.with_name(link.name + ".new")
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        temporary.symlink_to(os.ttyname(slave))
        os.replace(temporary, link)
        channel = PtyChannel(master)
        if not started:
            task_status.started()
            started = True
        try:
            await sim.serve_client(channel)
        finally:
            os.close(slave)
