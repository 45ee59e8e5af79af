"""One console: a ptpython prompt of its own, attached to a session, outliving its websockets.

Why not ptpython's ``embed``/``run_async``: they read every line in a thread on prompt_toolkit's
default app session (a second connection captures the first one's input), install SIGINT
handlers per evaluation (fails off the main thread, takes the server's Ctrl-C away) and run
``!`` lines with ``os.system``. Instead (see shared/notes/webshell.md), each console builds a
``PythonRepl`` on its own pipe input and ``Vt100_Output`` inside ``create_app_session``, and
loops itself: ``await repl.app.run_async(handle_sigint=False, set_exception_handler=False)``,
then evaluates the text. This uses ptpython internals: ptpython is pinned (3.0.32) and the
integration is tested (tests/test_shell_console.py).

User code runs in a worker thread (``anyio.to_thread``) so that ``time.sleep`` or a blocking
``ascan(...)`` freezes nothing; lines with a top-level ``await`` run on the event loop. The
command runs in a cancel scope: Ctrl-C (``\\x03`` while it runs) cancels that scope, which
aborts the scans it started (they run in the worker's host task's scope), and raises
KeyboardInterrupt in the worker thread for pure-Python code. Output is routed through a
context variable (:mod:`blissng.shell.output`) into the console's :class:`TerminalFeed`, which
attached tabs read from their own positions.
"""

from __future__ import annotations

import ast
import inspect
import os
import secrets
import subprocess
import threading
import traceback
from collections import deque
from collections.abc import Callable
from types import CodeType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
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

from blissng.locks import Holder, holding_as

from .builtins import ErrorInfo, current_console
from .completion import pause_before_jedi
from .feed import TerminalFeed
from .interrupt import CommandInterrupted, ThreadInterrupter, current_interrupter
from .output import install_output_router, output_to
from .session import command_context

if TYPE_CHECKING:
    from .consoles import SessionConsoles

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

    Several tabs can attach (:mod:`blissng.web.consoles`); they read :attr:`feed` and send
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
        self.errors: deque[ErrorInfo] = deque(maxlen=10)
        self.busy = False
        self.command_text: str | None = None
        self.attached = 0  # tabs reading this console
        self.last_detach = anyio.current_time()
        self.closed = anyio.Event()
        self.status_version = 0  # incremented (and the feed poked) on busy/idle changes
        self._scope: anyio.CancelScope | None = None
        self._interrupter: ThreadInterrupter | None = None
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
        if self._scope is not None:
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
        pause_before_jedi(repl)  # Jedi on every keystroke would hold the GIL for all tabs
        return repl

    async def _repl_loop(self) -> None:
        repl = self.repl
        assert repl is not None
        while True:
            try:
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
        """Keystrokes from a controlling tab. ``\\x03`` while a command runs interrupts it."""
        if self.busy and "\x03" in data:
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
            self.repl.app._on_resize()

    def redraw(self) -> None:
        """Draw the prompt again (a tab just attached and replayed the scrollback)."""
        if self.repl is not None and self.repl.app.is_running:
            self.repl.app._on_resize()

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
        above the prompt otherwise."""
        if stream != "session":  # the session's own output is logged once, not per console
            self.consoles.log.output(text)
        if self.busy:
            self.feed.write(text)
            return
        with self._background_lock:
            self._background.append(text)
        self._wake_background()

    def _wake_background(self) -> None:
        loop = self.feed._loop
        if loop is None or threading.get_ident() == self.feed._loop_thread:
            self._background_event.set()
        else:
            try:
                loop.call_soon_threadsafe(self._background_event.set)
            except RuntimeError:
                pass

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

    def interrupt(self) -> None:
        """Ctrl-C: cancel the running command (its scans abort) and interrupt its thread."""
        if self._scope is not None:
            self._scope.cancel()
        if self._interrupter is not None:
            self._interrupter.interrupt()

    async def execute(self, text: str) -> None:
        """Evaluate one accepted input; errors are shown as one line (``last_error()``)."""
        repl = self.repl
        assert repl is not None
        self.consoles.log.command(self.id, text)
        install_output_router()  # again: a test harness may have swapped sys.stdout since
        self.busy = True
        self.command_text = text
        self._notify_status()
        interrupter = ThreadInterrupter()
        error: BaseException | None = None
        has_result, result = False, None
        console_token = current_console.set(self)
        interrupter_token = current_interrupter.set(interrupter)
        try:
            holder = Holder(self.session.name, self.id, text.strip()[:80])  # device locks
            with output_to(self), command_context(self.session, self.writer), holding_as(holder):
                with anyio.CancelScope() as scope:
                    self._scope, self._interrupter = scope, interrupter
                    try:
                        has_result, result = await self._evaluate(repl, text, interrupter)
                    except ReplExit:
                        raise
                    except Exception as exc:
                        error = exc
                    except anyio.get_cancelled_exc_class():
                        raise
                    except BaseException as exc:  # CommandCancelled, KeyboardInterrupt...
                        error = CommandInterrupted(type(exc).__name__)
                        error.__cause__ = exc
                self._scope = self._interrupter = None
                aborted = scope.cancelled_caught or interrupter.interrupted
                if aborted:
                    self._write_line(
                        f"{_RED}!!! === KeyboardInterrupt: command aborted === !!!{_RESET}"
                    )
                elif error is not None:
                    self._show_error(error)
                elif has_result and result is not None:
                    try:
                        await anyio.to_thread.run_sync(self._show_result, repl, result)
                    except Exception as exc:
                        self._show_error(exc)
                    repl.current_statement_index += 1
                else:
                    repl.current_statement_index += 1
        finally:
            current_interrupter.reset(interrupter_token)
            current_console.reset(console_token)
            self._scope = self._interrupter = None
            background = self._take_background()
            if background:
                self.feed.write(background)
            self.busy = False
            self.command_text = None
            self._notify_status()

    async def _evaluate(
        self, repl: PythonRepl, text: str, interrupter: ThreadInterrupter
    ) -> tuple[bool, Any]:
        """Compile on the loop; run in a worker thread, or on the loop for top-level await."""
        if text.lstrip().startswith("!"):
            await anyio.to_thread.run_sync(self._shell_escape, text.lstrip()[1:], interrupter)
            return False, None
        namespace = self.session.namespace
        body, last = compile_input(text, repl.get_compiler_flags())
        if _is_coroutine_code(body) or (last is not None and _is_coroutine_code(last)):
            result = await _run_on_loop(body, last, namespace)
        else:
            result = await anyio.to_thread.run_sync(
                interrupter.run, lambda: _run_code(body, last, namespace)
            )
        if last is not None:
            namespace["_"] = result
            return True, result
        return False, None

    def _shell_escape(self, command: str, interrupter: ThreadInterrupter) -> None:
        """``!cmd``: run in a subprocess without the server's stdin; show its output."""

        def run() -> None:
            completed = subprocess.run(
                command,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=600,
                check=False,
            )
            print(completed.stdout, end="")

        interrupter.run(run)

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
        self.errors.append((type(error), error, error.__traceback__))
        message = str(error)
        name = type(error).__name__
        line = f"{name}: {message}" if message else name
        if isinstance(error, SyntaxError):
            line = "".join(traceback.format_exception_only(type(error), error)).strip()
            line = line.replace("\n", " ")
        self._write_line(
            f"{_RED}!!! === {line} === !!!{_RESET} ( for more details type cmd 'last_error()' )"
        )


def _is_coroutine_code(code: Any) -> bool:
    return bool(code.co_flags & inspect.CO_COROUTINE)


def compile_input(text: str, flags: int = 0) -> tuple[CodeType, CodeType | None]:
    """Statements to exec and, when the input ends with an expression, that expression to
    eval (its value is shown, as in IPython: ``x = 2; x * 3`` shows 6)."""
    flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = ast.parse(text, "<stdin>", "exec", type_comments=False)
    last: CodeType | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        statement = tree.body.pop()
        assert isinstance(statement, ast.Expr)
        expression = ast.Expression(statement.value)
        last = compile(expression, "<stdin>", "eval", flags=flags, dont_inherit=True)
    body = compile(tree, "<stdin>", "exec", flags=flags, dont_inherit=True)
    return body, last


def _run_code(body: CodeType, last: CodeType | None, namespace: dict[str, Any]) -> Any:
    exec(body, namespace)
    return eval(last, namespace) if last is not None else None


async def _run_on_loop(body: CodeType, last: CodeType | None, namespace: dict[str, Any]) -> Any:
    """Input with a top-level ``await``: runs on the event loop (blocking calls in it block
    the loop, like any async code)."""
    outcome = eval(body, namespace)
    if inspect.isawaitable(outcome):
        await outcome
    if last is None:
        return None
    result = eval(last, namespace)
    if _is_coroutine_code(last):
        result = await result
    return result


CommandHook = Callable[[Console, str], None]
