"""This terminal attached to a console: raw mode, keystrokes in, output out, size followed.

One console everywhere: a browser tab, ``blissng shell SESSION`` (over the console websocket,
:mod:`blissng.shell._remote`) and the terminal that started ``blissng demo``/``serve``
(:func:`attach_local`, in the server's own process) all show the same
:class:`~blissng.shell.Console` of a session: the same commands, display, history and
Ctrl-C. The terminal goes to raw mode, so Ctrl-C reaches the console as a keystroke (it
interrupts the running command), not as a SIGINT to the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import termios
import threading
import tty
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import anyio

from blissng.threads import run_in_thread

if TYPE_CHECKING:
    from ._console import Console

CHUNK = 1024  # bytes written to the terminal at once (after it said it can take more)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on a terminal (restored on exit); nothing when ``fd`` is not a terminal."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int) -> tuple[int, int]:
    """(rows, columns) of the terminal on ``fd`` (24 x 80 when unknown)."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 24, 80
    return (size.lines or 24), (size.columns or 80)  # a fresh pty reports 0x0


async def pump_keys(send: Callable[[str], Awaitable[None]], fd: int) -> None:
    """Send what is typed on ``fd`` until it closes (then return)."""
    pollable = True
    while True:
        if pollable:
            try:
                await anyio.wait_readable(fd)
            except PermissionError:  # a regular file or /dev/null: read it in a thread
                pollable = False
        if pollable:
            data = os.read(fd, 4096)
        else:
            data = await run_in_thread(os.read, fd, 4096, abandon_on_cancel=True)
        if not data:
            return
        await send(data.decode("utf-8", errors="replace"))


async def follow_size(resize: Callable[[int, int], Awaitable[None]], fd: int) -> None:
    """Report the terminal's size at each SIGWINCH (main thread only: elsewhere, never)."""
    if not hasattr(signal, "SIGWINCH") or threading.current_thread() is not threading.main_thread():
        return
    with anyio.open_signal_receiver(signal.SIGWINCH) as signals:
        async for _ in signals:
            await resize(*terminal_size(fd))


async def write_terminal(fd: int, text: str) -> None:
    """Write to a terminal without ever blocking the event loop on a slow one: small chunks,
    each once the terminal can take it."""
    data = text.encode("utf-8", errors="replace")
    while data:
        await anyio.wait_writable(fd)
        written = os.write(fd, data[:CHUNK])
        data = data[written:]


async def attach_local(console: Console, *, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
    """This process's terminal shows ``console`` until the console ends (Ctrl-D, ``exit()``)
    or this is cancelled (the terminal is then given back as it was)."""

    async def send(text: str) -> None:
        try:
            console.send_input(text)
        except ValueError:  # too much typed ahead: the excess is dropped, as a terminal does
            pass

    async def resize(rows: int, columns: int) -> None:
        console.resize(rows, columns)

    console.attached += 1
    try:
        with raw_terminal(stdin_fd):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump_keys, send, stdin_fd)
                tg.start_soon(follow_size, resize, stdout_fd)
                await show_feed(console, stdout_fd)
                tg.cancel_scope.cancel()
    finally:
        console.attached -= 1
        console.last_detach = anyio.current_time()


async def show_feed(console: Console, fd: int) -> None:
    """Copy the console's output to ``fd`` until the console is closed."""
    feed = console.feed
    position = feed.replay_start()
    first = True
    while True:
        activity = feed.activity()
        text, position = feed.read(position)
        if text:
            await write_terminal(fd, text)
        if first:
            first = False
            console.redraw()
        if feed.closed and position >= feed.end:
            return
        if position >= feed.end:
            await activity.wait()


class ConsoleLog:
    """A text stream for the server's log lines while a terminal shows a console: they go
    above its prompt (not across it), and to no one else's."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        self._console.write_output(text, stream="server")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True
