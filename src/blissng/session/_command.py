"""One command runner per session, fed by its consoles, the HTTP API and the session itself.

Whoever types Python into a session (a console in a terminal or a browser tab, a GUI
through the API, the setup script) hands it to the session's :class:`CommandRunner` and
gets a :class:`RunningCommand`. So there is one of each of these, whatever the way in:

- **compile rule** (:mod:`._typed`, :func:`compile_input`): statements, then the value of a final
  expression is the result (``print('x'); 1 + 1`` gives 2 and prints ``x``); a line with a
  top-level ``await`` runs on the event loop, anything else in a worker thread (so
  ``time.sleep`` and blocking scan commands freeze nothing); ``!cmd`` runs a shell command
  without the server's stdin. A coroutine result is awaited (never left unawaited).
- **output**: ``print``, ``sys.stdout``/``sys.stderr`` and the scans' tables go to the
  command (a context variable: :mod:`blissng.session._process_hooks`), which keeps them
  (:attr:`RunningCommand.output`) and forwards them to its target (the console that typed
  it, or the session's output for the API and the session).
- **cancellation** (:meth:`RunningCommand.cancel`, Ctrl-C): the command's cancel scope is
  cancelled (its scan aborts, its motors stop) and its worker thread gets
  ``KeyboardInterrupt`` (:class:`blissng.scans.ThreadInterrupter`); the command ends
  ``cancelled``.
- **errors**: the last ten of each origin (a console, an API client, the session), shown
  by ``last_error()`` typed from that origin.
- **visibility**: :attr:`CommandRunner.commands` lists the running and recent commands of
  every origin (the API serves them).

A command belongs to the runner's task group (the session's), not to whoever submitted
it: a console that goes away (a network blip, a closed tab) does not abort it.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import inspect
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.abc

from blissng.errors import Aborted
from blissng.locks import Holder, set_holder
from blissng.scans import (
    ThreadInterrupter,
    current_interrupter,
    is_coroutine_function,
    routed_sleep,
)
from blissng.threads import run_in_thread

from ._process_hooks import install_process_hooks, output_to, reroute
from ._typed import CommandHelp, Source, error_text, refuse_breakpoint, refuse_input, user_traceback

MAX_OUTPUT = 256 * 1024  # characters of a command's output kept with it (the end)
KEEP_COMMANDS = 100  # finished commands listed besides the running ones
KEEP_ERRORS = 10  # errors kept per origin for last_error()

_ids = itertools.count(1)


class Output(Protocol):
    """Where a command's output goes (a console, the session's output): a text stream."""

    def write(self, text: str, /) -> Any: ...


class RunningCommand:
    """One submitted command: ``await cmd.wait()``, ``cmd.cancel()``, ``cmd.state``.

    ``state`` is pending, running, done, failed or cancelled. ``result`` is the value of the
    final expression (``has_result`` says whether there was one), ``error`` what it raised
    (a cancelled command: :class:`~blissng.errors.Aborted`), ``output`` what it printed (the
    last :data:`MAX_OUTPUT` characters); ``result_printed``: the command printed its result
    already (``wa()``), a console does not show it again. The command is also a text stream
    (``write``), the output of the scans it runs.
    """

    def __init__(self, text: str, *, origin: str = "session", output: Output | None = None):
        self.id = next(_ids)
        self.text = text
        self.origin = origin
        self.state = "pending"
        self.result: Any = None
        self.has_result = False
        self.result_printed = False
        self.error: BaseException | None = None
        self.start_time = time.time()
        self.end_time: float | None = None
        self.scope = anyio.CancelScope()
        self.interrupter = ThreadInterrupter()
        self.cancel_requested = False
        self._target = output
        self._done = anyio.Event()
        self._output: collections.deque[str] = collections.deque()
        self._output_size = 0
        self._dropped = 0
        self._output_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RunningCommand {self.id} {self.text!r} {self.state}>"

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Ctrl-C: cancel the command's scope (its scans abort) and interrupt its thread.
        Call on the event loop thread."""
        if self.done:
            return
        self.cancel_requested = True
        self.scope.cancel()
        self.interrupter.interrupt()

    async def wait(self) -> Any:
        """Wait for the end; return the result or raise the command's error (a cancelled
        command raises :class:`~blissng.errors.Aborted`)."""
        await self._done.wait()
        if self.error is not None:
            raise self.error
        return self.result

    async def wait_done(self) -> None:
        """Wait for the end, whatever it is."""
        await self._done.wait()

    # -- output -----------------------------------------------------------------------------

    def write(self, text: str) -> int:
        self.write_output(text, stream="stdout")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        """Whether the target is a terminal (a console: the scans draw live lines there)."""
        isatty = getattr(self._target, "isatty", None)
        return bool(isatty()) if callable(isatty) else False

    @property
    def columns(self) -> int | None:
        """The target terminal's width (scan tables wrap to it), None when not a terminal."""
        columns = getattr(self._target, "columns", None)
        return columns if isinstance(columns, int) else None

    def write_transient(self, text: str) -> int:
        """Text shown but not kept (a scan's progress line, rewritten then erased): passed to
        a target that can show it so (a console), not kept in :attr:`output`."""
        if self._target is not None:
            transient = getattr(self._target, "write_transient", None)
            (transient or self._target.write)(text)
        return len(text)

    def write_output(self, text: str, *, stream: str = "stdout") -> None:
        """What the command prints (any thread): kept, and forwarded to its target."""
        if not text:
            return
        with self._output_lock:
            self._output.append(text)
            self._output_size += len(text)
            while self._output_size > MAX_OUTPUT and len(self._output) > 1:
                dropped = len(self._output.popleft())
                self._output_size -= dropped
                self._dropped += dropped
        if self._target is not None:
            self._target.write(text)

    @property
    def output(self) -> str:
        with self._output_lock:
            text = "".join(self._output)
            dropped = self._dropped
        return f"[... {dropped} characters dropped]\n{text}" if dropped else text

    # -- used by the runner -----------------------------------------------------------------

    @property
    def target(self) -> Output | None:
        """Where the output goes besides :attr:`output` (a console, the session's output)."""
        return self._target

    def finish(self, state: str, *, result: Any = None, has_result: bool = False,
                error: BaseException | None = None) -> None:  # fmt: skip
        """End the command (its runner does): ``state`` with its result or error."""
        self.state = state
        self.result = result
        self.has_result = has_result
        self.error = error
        self.end_time = time.time()
        self._done.set()


# The command whose code runs here (its task, its worker thread, their children).
current_command: contextvars.ContextVar[RunningCommand | None] = contextvars.ContextVar(
    "blissng_current_command", default=None
)


def outcome_text(cmd: RunningCommand) -> str:
    """How a command that did not succeed ended, on one line (what consoles show)."""
    if cmd.state == "cancelled":
        return "KeyboardInterrupt: command aborted"
    return error_text(cmd.error) if cmd.error is not None else cmd.state


# ---------------------------------------------------------------------- the runner

CommandContext = Callable[[RunningCommand], contextlib.AbstractContextManager[Any]]


class CommandRunner:
    """Runs the commands of one session (``name``) in ``namespace``, in its task group.

    ``output``: where commands without a target of their own print (the session's output).
    ``context(cmd)``: entered around every command (a session makes its scan context
    current there, with the command as the scans' output). ``async with runner`` (or
    ``await tg.start(runner.serve)``) runs the task group; it also installs the
    process-wide hooks (:func:`~blissng.session._process_hooks.process_hooks`) for as long.
    """

    def __init__(
        self,
        name: str,
        namespace: dict[str, Any],
        *,
        output: Output | None = None,
        context: CommandContext | None = None,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.output = output
        self._context = context
        self._tg: anyio.abc.TaskGroup | None = None
        self._undo_hooks: Callable[[], None] | None = None
        self._running: dict[int, RunningCommand] = {}
        self._finished: collections.deque[RunningCommand] = collections.deque(maxlen=KEEP_COMMANDS)
        self._errors: dict[str, collections.deque[BaseException]] = {}
        namespace.setdefault("last_error", self.last_error)
        namespace.setdefault("input", refuse_input)
        namespace.setdefault("breakpoint", refuse_breakpoint)
        namespace.setdefault("help", CommandHelp())
        namespace.setdefault("sleep", routed_sleep)

    def __repr__(self) -> str:
        return f"<CommandRunner {self.name}: {len(self._running)} running>"

    @property
    def running(self) -> bool:
        return self._tg is not None

    # -- life cycle -------------------------------------------------------------------------

    async def __aenter__(self) -> CommandRunner:
        self._undo_hooks = install_process_hooks()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._tg is not None
        for cmd in list(self._running.values()):
            cmd.cancel()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(*exc_info)
        finally:
            self._tg = None
            if self._undo_hooks is not None:
                self._undo_hooks()
                self._undo_hooks = None

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[CommandRunner] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled (``await task_group.start(runner.serve)``)."""
        async with self:
            task_status.started(self)
            await anyio.sleep_forever()

    # -- commands ---------------------------------------------------------------------------

    @property
    def commands(self) -> list[RunningCommand]:
        """The recent commands, oldest first, then the running ones."""
        return [*self._finished, *self._running.values()]

    def get(self, ident: int) -> RunningCommand:
        """A command by id (running or recent); KeyError otherwise."""
        if ident in self._running:
            return self._running[ident]
        for cmd in self._finished:
            if cmd.id == ident:
                return cmd
        raise KeyError(ident)

    def submit_source(
        self,
        source: str,
        *,
        output: Output | None = None,
        origin: str = "session",
        show_errors: bool = True,
    ) -> RunningCommand:
        """Run Python ``source`` typed by ``origin`` (a console id, ``api:<client>``,
        ``session``); its output goes to ``output`` (default: the session's), and with
        ``show_errors`` how it failed, as one line (a console shows that itself). Compiled
        now: raises SyntaxError at once. Returns the command's handle; call on the loop."""
        try:
            code = Source(source, self.namespace)
        except SyntaxError as exc:  # last_error() shows it like any other
            self._record_error(origin, exc)
            raise
        return self._submit(code, source, output, origin, show_errors)

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        output: Output | None = None,
        origin: str = "session",
        text: str = "",
        show_errors: bool = True,
    ) -> RunningCommand:
        """Run ``func(*args)`` as a command: coroutine functions on the event loop, plain
        ones in a worker thread (where scan commands block)."""
        text = text or getattr(func, "__name__", repr(func))
        return self._submit((func, args), text, output, origin, show_errors)

    def _submit(
        self, code: Any, text: str, output: Output | None, origin: str, show_errors: bool
    ) -> RunningCommand:
        if self._tg is None:
            raise RuntimeError(
                f"the commands of session {self.name} are not running (start the session)"
            )
        cmd = RunningCommand(text, origin=origin, output=output or self.output)
        self._running[cmd.id] = cmd
        self._tg.start_soon(
            self._run, cmd, code, show_errors, name=f"command {cmd.id} of {self.name}"
        )
        return cmd

    async def _run(self, cmd: RunningCommand, code: Any, show_errors: bool) -> None:
        # The task runs in a copy of the submitter's context: what it set (a console, the
        # API's holder) is seen by the command.
        current_command.set(cmd)
        set_holder(Holder(self.name, cmd.origin, cmd.text.strip()[:80]))  # device locks
        reroute()
        cmd.state = "running"
        result: Any = None
        has_result = False
        error: BaseException | None = None
        try:
            with contextlib.ExitStack() as stack:
                if self._context is not None:
                    stack.enter_context(self._context(cmd))
                stack.enter_context(output_to(cmd))
                with cmd.scope:
                    has_result, result, error = await self._execute(cmd, code)
                    if error is None and inspect.isawaitable(result):
                        result = await result  # a coroutine is never left unawaited
        except (Exception, Aborted) as exc:
            # Raised on the loop: by a coroutine command, a context, or a scan it awaited that
            # was stopped from elsewhere (Aborted: not the session stopping).
            error = exc
        except BaseException:  # the session is stopping: record, then let it go
            cmd.finish("cancelled", error=Aborted(f"{cmd.text} cancelled"))
            self._retire(cmd)
            raise
        cancelled = cmd.cancel_requested and (
            cmd.scope.cancelled_caught or (error is not None and _is_interrupt(error))
        )
        if cancelled:
            cmd.finish("cancelled", error=Aborted(f"{cmd.text} cancelled"))
        elif error is not None:  # (a KeyboardInterrupt user code raised itself too)
            cmd.finish("failed", error=error)
            self._record_error(cmd.origin, error)
        else:
            if has_result:
                self.namespace["_"] = result
            cmd.result_printed = bool(getattr(code, "result_printed", False))
            cmd.finish("done", result=result, has_result=has_result)
        self._retire(cmd)
        if show_errors and cmd.target is not None and cmd.state != "done":
            cmd.target.write(f"!!! === {outcome_text(cmd)} === !!!\n")

    async def _execute(
        self, cmd: RunningCommand, code: Any
    ) -> tuple[bool, Any, BaseException | None]:
        if isinstance(code, Source):
            if code.is_async:
                has_result, result = await code.run_on_loop()
                return has_result, result, None
            return await run_in_thread(_in_thread, cmd, code.run_in_thread)
        func, args = code
        if is_coroutine_function(func):
            return True, await func(*args), None
        return await run_in_thread(_in_thread, cmd, lambda: (True, func(*args)))

    def _retire(self, cmd: RunningCommand) -> None:
        self._running.pop(cmd.id, None)
        self._finished.append(cmd)

    # -- errors -----------------------------------------------------------------------------

    def _record_error(self, origin: str, error: BaseException) -> None:
        self._errors.setdefault(origin, collections.deque(maxlen=KEEP_ERRORS)).append(error)

    def errors(self, origin: str) -> list[BaseException]:
        """The last errors of commands typed by ``origin``, oldest first."""
        return list(self._errors.get(origin, ()))

    def last_error(self, index: int = -1) -> None:
        """``last_error()``: the full traceback of the last error of this console (or API
        client); ``last_error(-2)`` the one before."""
        cmd = current_command.get()
        origin = cmd.origin if cmd is not None else "session"
        errors = self.errors(origin)
        if not errors:
            print("no error so far")
            return
        try:
            error = errors[index]
        except IndexError:
            print(f"only {len(errors)} errors are kept")
            return
        print(user_traceback(error), end="")


def _in_thread(
    cmd: RunningCommand, func: Callable[[], tuple[bool, Any]]
) -> tuple[bool, Any, BaseException | None]:
    """The command's code in its worker thread. Nothing but an ordinary return leaves: a
    KeyboardInterrupt crossing into the event loop would stop it."""
    token = current_interrupter.set(cmd.interrupter)
    try:
        has_result, result = cmd.interrupter.run(func)
        return has_result, result, None
    except BaseException as exc:  # KeyboardInterrupt, SystemExit, errors of user code
        return False, None, exc
    finally:
        current_interrupter.reset(token)


def _is_interrupt(error: BaseException) -> bool:
    return isinstance(error, KeyboardInterrupt | Aborted)
