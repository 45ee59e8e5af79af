"""One console: a ptpython prompt of its own, attached to a session, outliving its websockets.

Why not ptpython's ``embed``/``run_async``: they read every line in a thread on prompt_toolkit's
default app session (a second connection captures the first one's input), install SIGINT
handlers per evaluation (fails off the main thread, takes the server's Ctrl-C away) and run
``!`` lines with ``os.system``. Instead (docs/decisions/0006-ptpython-internals.md), each
console builds a ``PythonRepl`` on its own pipe input and ``Vt100_Output`` inside
``create_app_session``, and loops itself:
``await repl.app.run_async(handle_sigint=False, set_exception_handler=False)``, then evaluates
the text. This uses ptpython internals: ptpython is pinned (3.0.32) and the
integration is tested (tests/test_shell_console.py).

An accepted line is not run here: it goes to the session's command runner
(:class:`blissng.session.CommandRunner`), the same one the HTTP API and the session use, so the
compile rule, the worker thread, the output routing, Ctrl-C and ``last_error()`` are the same
everywhere. The console shows what came back: the command's output (routed into the
console's :class:`TerminalFeed`, which attached tabs read from their own positions), then
``Out [n]: value`` or the error as one line. Ctrl-C (``\\x03`` while a command runs) cancels
the command.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
from prompt_toolkit.application import create_app_session
from prompt_toolkit.application.run_in_terminal import in_terminal
from prompt_toolkit.data_structures import Size
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import AnyFormattedText
from prompt_toolkit.history import History
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output
from ptpython.prompt_style import PromptStyle
from ptpython.repl import PythonRepl, ReplExit
from ptpython.utils import unindent_code

from blissng.session import RunningCommand, error_text, outcome_text
from blissng.threads import run_in_thread

from ._builtins import current_console
from ._completion import pause_before_jedi, redraw_only_for_a_suggestion
from ._feed import TerminalFeed
from ._styles import share_code_styles

if TYPE_CHECKING:
    from ._hub import SessionConsoles

MAX_TYPEAHEAD = 1024 * 1024  # characters queued while the prompt cannot read them
_RED = "\x1b[31m"
_RESET = "\x1b[0m"


class TerminalStream:
    """The ``stdout`` of a console's ``Vt100_Output``: everything goes to the feed."""

    def __init__(self, feed: TerminalFeed) -> None:
        self._feed = feed

    encoding = "utf-8"
    errors = "replace"

    def write(self, data: str) -> int:
        self._feed.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("a console's terminal has no file descriptor")


class ConsoleWriter:
    """The console as a text stream (``write``/``flush``), for the scans layer's output."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        self._console.write_output(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    @property
    def columns(self) -> int:
        """The terminal's width (the scan table wraps its rows to it)."""
        return self._console.size.columns

    def write_transient(self, text: str) -> int:
        """Text shown on the terminal but not kept in the session's log: a scan's progress
        line, rewritten in place and erased."""
        self._console.write_output(text, stream="transient")
        return len(text)


class SessionPrompt(PromptStyle):
    """BLISS-style prompt: ``demo [3]: `` / ``  Out [3]: ``."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def _index(self) -> int:
        return self._console.repl.current_statement_index if self._console.repl else 1

    def in_prompt(self) -> AnyFormattedText:
        return [
            ("class:in", f"{self._console.session_name} ["),
            ("class:in.number", str(self._index())),
            ("class:in", "]: "),
        ]

    def in2_prompt(self, width: int) -> AnyFormattedText:
        return [("class:in", "...: ".rjust(width))]

    def out_prompt(self) -> AnyFormattedText:
        return [
            ("class:out", "  Out ["),
            ("class:out.number", str(self._index())),
            ("class:out", "]: "),
        ]


class Console:
    """A prompt on a session. Lives in the session's consoles' task group, not in a websocket.

    Several tabs can attach (:mod:`blissng.web._console_socket`); they read :attr:`feed` and send
    keystrokes with :meth:`send_input`. The console goes on when all tabs are gone, so a
    reloaded page reattaches to it (and sees its scrollback) while a scan continues.
    """

    def __init__(
        self,
        consoles: SessionConsoles,
        console_id: str | None = None,
        *,
        rows: int = 24,
        columns: int = 80,
    ) -> None:
        self.consoles = consoles
        self.session = consoles.session
        self.id = console_id or secrets.token_hex(4)
        self.feed = TerminalFeed()
        self.writer = ConsoleWriter(self)
        self.size = Size(rows=rows, columns=columns)
        self.repl: PythonRepl | None = None
        self.busy = False
        self.command_text: str | None = None
        self.attached = 0  # tabs reading this console
        self.last_detach = anyio.current_time()
        self.closed = anyio.Event()
        self.status_version = 0  # incremented (and the feed poked) on busy/idle changes
        self._command: RunningCommand | None = None
        self._pending_interrupt = False
        self._input: PipeInput | None = None
        self._typeahead: deque[str] = deque()
        self._typeahead_chars = 0
        self._typeahead_event = anyio.Event()
        self._background: list[str] = []
        self._background_lock = threading.Lock()
        self._background_event = anyio.Event()
        self._stop = anyio.Event()

    @property
    def session_name(self) -> str:
        return self.session.name

    # -- life cycle ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The console's task: its REPL loop, input pump and background-output printer."""
        self.feed.bind_loop()
        try:
            await share_code_styles()  # not built on the loop for each console
            with create_pipe_input() as pipe_input:
                self._input = pipe_input
                os.set_blocking(pipe_input.pipe.write_fd, False)  # type: ignore[attr-defined]
                output = Vt100_Output(
                    TerminalStream(self.feed),  # type: ignore[arg-type]
                    lambda: self.size,
                    term="xterm-256color",
                    enable_cpr=False,
                )
                with create_app_session(input=pipe_input, output=output):
                    self.repl = self._create_repl(pipe_input, output)
                    task_status.started()
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._pump_input)
                        tg.start_soon(self._print_background_output)
                        tg.start_soon(self._wait_stop, tg.cancel_scope)
                        await self._repl_loop()
                        tg.cancel_scope.cancel()
        finally:
            self.feed.write("\r\n[console closed]\r\n")
            self.feed.close()
            self.closed.set()
            self._notify_status()

    async def _wait_stop(self, scope: anyio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()

    def close(self) -> None:
        """Stop the console (its running command is cancelled)."""
        self.interrupt()
        self._stop.set()

    def _create_repl(self, pipe_input: PipeInput, output: Vt100_Output) -> PythonRepl:
        namespace = self.session.namespace
        repl = PythonRepl(
            get_globals=lambda: namespace,
            get_locals=lambda: namespace,
            input=pipe_input,
            output=output,
        )
        history: History = self.consoles.history
        repl.history = history
        repl.default_buffer.history = history
        repl.show_signature = True
        repl.show_docstring = False
        repl.confirm_exit = False
        repl.enable_system_bindings = False  # Ctrl-Z would suspend the server
        repl.enable_open_in_editor = False  # would start $EDITOR on the server
        repl.insert_blank_line_after_output = False
        repl.all_prompt_styles["blissng"] = SessionPrompt(self)
        repl.prompt_style = "blissng"
        repl.title = f"blissng {self.session_name}"
        # Draw a keystroke's echo at once: prompt_toolkit otherwise waits up to 10 ms for an
        # idle loop, which a server running scans never is (benchmarks/echo_latency.py).
        repl.app.max_render_postpone_time = 0
        # The tab sends its size (resize()); polling it every 0.5 s would wake an idle server.
        repl.app.terminal_size_polling_interval = None
        pause_before_jedi(repl)  # Jedi on every keystroke would hold the GIL for all tabs
        redraw_only_for_a_suggestion(repl)  # not the same prompt twice per keystroke
        return repl

    async def _repl_loop(self) -> None:
        repl = self.repl
        assert repl is not None
        while True:
            try:
                self._pending_interrupt = False
                text = await repl.app.run_async(handle_sigint=False, set_exception_handler=False)
            except KeyboardInterrupt:  # Ctrl-C at the prompt: drop the line
                repl.signatures = []
                repl.default_buffer.document = Document()
                continue
            except EOFError:  # Ctrl-D
                return
            text = unindent_code(text)
            if not text or text.isspace():
                continue
            try:
                await self.execute(text)
            except ReplExit:
                return

    # -- input ------------------------------------------------------------------------------

    def send_input(self, data: str) -> None:
        """Keystrokes from a controlling tab. ``\\x03`` while a command runs (or once its
        line was accepted, before it starts) interrupts it; at the prompt it clears the line."""
        if "\x03" in data and not self._prompt_reading():
            self.interrupt()
            data = data.replace("\x03", "")
        if not data:
            return
        if self._typeahead_chars + len(data) > MAX_TYPEAHEAD:
            raise ValueError(
                f"too much pending input ({self._typeahead_chars + len(data)} characters > "
                f"{MAX_TYPEAHEAD}): wait for the running command or paste less"
            )
        self._typeahead.append(data)
        self._typeahead_chars += len(data)
        self._typeahead_event.set()

    async def _pump_input(self) -> None:
        """Feed typed text to the prompt's pipe without ever blocking the loop on it."""
        assert self._input is not None
        fd: int = self._input.pipe.write_fd  # type: ignore[attr-defined]
        while True:
            if not self._typeahead:
                await self._typeahead_event.wait()
                self._typeahead_event = anyio.Event()
                continue
            data = self._typeahead[0].encode("utf-8")
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                await anyio.wait_writable(fd)
                continue
            chunk = self._typeahead.popleft()
            if written < len(data):  # put back what did not fit (utf-8 safe split)
                rest = data[written:].decode("utf-8", errors="ignore")
                self._typeahead.appendleft(rest)
                self._typeahead_chars -= len(chunk) - len(rest)
            else:
                self._typeahead_chars -= len(chunk)
            await anyio.lowlevel.checkpoint()

    def resize(self, rows: int, columns: int) -> None:
        """Follow the controlling tab's terminal size."""
        if not (1 <= rows <= 1000 and 1 <= columns <= 2000):
            raise ValueError(f"terminal size {rows}x{columns} out of range (1-1000 x 1-2000)")
        self.size = Size(rows=rows, columns=columns)
        if self.repl is not None and self.repl.app.is_running:
            self.repl.app._on_resize()  # prompt_toolkit internals: what SIGWINCH calls

    def redraw(self) -> None:
        """Draw the prompt again (a tab just attached and replayed the scrollback)."""
        if self.repl is not None and self.repl.app.is_running:
            self.repl.app._on_resize()  # prompt_toolkit internals, as in resize()

    # -- status -----------------------------------------------------------------------------

    def _notify_status(self) -> None:
        self.status_version += 1
        self.feed.poke()

    def status(self) -> dict[str, Any]:
        return {
            "session": self.session_name,
            "console": self.id,
            "busy": self.busy,
            "command": self.command_text,
            "closed": self.closed.is_set(),
            "rows": self.size.rows,
            "columns": self.size.columns,
        }

    # -- output -----------------------------------------------------------------------------

    def write_output(self, text: str, *, stream: str = "stdout") -> None:
        """User code's prints (any thread): straight to the terminal while a command runs,
        above the prompt otherwise. (``stream``: "session" for the session's own output,
        logged once, not per console; "transient" for a progress line, not logged at all;
        "server" for the server's log lines on its terminal, not a session's business.)"""
        if stream not in ("session", "transient", "server"):
            self.consoles.log.output(text)
        if self.busy:
            self.feed.write(text)
            return
        with self._background_lock:
            self._background.append(text)
        self._wake_background()

    def _wake_background(self) -> None:
        self.feed.call_on_loop(self._background_event.set)

    def _take_background(self) -> str:
        with self._background_lock:
            text = "".join(self._background)
            self._background.clear()
        return text

    async def _print_background_output(self) -> None:
        while True:
            await self._background_event.wait()
            self._background_event = anyio.Event()
            text = self._take_background()
            if not text:
                continue
            if self.repl is not None and self.repl.app.is_running and not self.busy:
                async with in_terminal():
                    self.feed.write(text)
            else:
                self.feed.write(text)

    def _write_line(self, text: str) -> None:
        self.feed.write(text + "\n")
        self.consoles.log.output(text + "\n")

    # -- commands ---------------------------------------------------------------------------

    @property
    def command(self) -> RunningCommand | None:
        """The command this console is running (None at the prompt)."""
        return self._command

    def _prompt_reading(self) -> bool:
        """The prompt is reading a line (not yet accepted)."""
        app = self.repl.app if self.repl is not None else None
        future = getattr(app, "future", None)
        return app is not None and app.is_running and future is not None and not future.done()

    def interrupt(self) -> None:
        """Ctrl-C: cancel the running command (its scans abort, its thread is interrupted),
        or the one whose line was just accepted."""
        if self._command is not None:
            self._command.cancel()
        else:
            self._pending_interrupt = True

    async def execute(self, text: str) -> None:
        """Run one accepted input through the session's runner and show how it ended."""
        repl = self.repl
        assert repl is not None
        self.consoles.log.command(self.id, text)
        self.busy = True
        self.command_text = text
        self._notify_status()
        console_token = current_console.set(self)  # the command's context is a copy of this
        try:
            try:
                cmd = self.session.runner.submit_source(
                    text, output=self.writer, origin=self.id, show_errors=False
                )
            except SyntaxError as exc:
                self._show_error(exc)
                return
            self._command = cmd
            if self._pending_interrupt:  # Ctrl-C typed right after Enter
                cmd.cancel()
            try:
                await cmd.wait_done()
            finally:
                if not cmd.done:  # the console is closing: so does its command
                    cmd.cancel()
            self._command = None
            await self._show_outcome(repl, cmd)
        finally:
            current_console.reset(console_token)
            self._command = None
            background = self._take_background()
            if background:
                self.feed.write(background)
            self.busy = False
            self.command_text = None
            self._notify_status()

    async def _show_outcome(self, repl: PythonRepl, cmd: RunningCommand) -> None:
        if cmd.state == "cancelled":
            self._write_line(f"{_RED}!!! === {outcome_text(cmd)} === !!!{_RESET}")
        elif cmd.error is not None:
            if isinstance(cmd.error, ReplExit):  # exit(): the console ends
                raise cmd.error
            self._show_error(cmd.error)
        else:
            if cmd.has_result and cmd.result is not None and not cmd.result_printed:
                try:
                    await run_in_thread(self._show_result, repl, cmd.result)
                except Exception as exc:
                    self._show_error(exc)
            repl.current_statement_index += 1

    def _show_result(self, repl: PythonRepl, result: object) -> None:
        """BLISS habit: objects with ``__info__`` show that text; others ptpython's repr."""
        info = getattr(type(result), "__info__", None)
        if callable(info):
            text = str(info(result))
            self.feed.write(text if text.endswith("\n") else text + "\n")
            self.consoles.log.output(text + "\n")
            return
        repl._show_result(result)

    def _show_error(self, error: BaseException) -> None:
        self._write_line(
            f"{_RED}!!! === {error_text(error)} === !!!{_RESET} "
            "( for more details type cmd 'last_error()' )"
        )
