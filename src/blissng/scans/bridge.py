"""One implementation, two ways to call it: ``await ascan(...)`` and, blocking, ``ascan(...)``.

Consoles run user code in worker threads (``anyio.to_thread.run_sync``), so that a
``time.sleep`` or a plain ``def align(): ascan(...)`` never freezes the event loop. Scan and
motor commands are written once, as coroutine functions, and decorated with
:func:`command`. The wrapper looks at where it is called from:

- on the event loop's thread (async code, ``await`` at the prompt): it returns the coroutine,
  so the caller awaits it;
- in a worker thread started by anyio (``anyio.to_thread.run_sync``): it runs the coroutine on
  the event loop with ``anyio.from_thread.run`` and blocks the thread until it is done. The
  coroutine runs inside the worker's host task's cancel scope, so cancelling the console
  command (Ctrl-C) cancels the scan;
- in any other thread: it uses the event-loop token registered with :func:`use_event_loop`
  (a session registers its loop), else it fails with a message saying what to do.

The undecorated coroutine function stays reachable as ``cmd.aio`` for async code that wants
to be explicit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

P = ParamSpec("P")
T = TypeVar("T")

# The loop that commands called from foreign threads (not started by anyio) run on.
_fallback_token: contextvars.ContextVar[anyio.lowlevel.EventLoopToken | None] = (
    contextvars.ContextVar("blissng_loop_token", default=None)
)
_global_token: anyio.lowlevel.EventLoopToken | None = None


class CommandCancelled(BaseException):
    """Raised in the worker thread when the command it waited for was cancelled (Ctrl-C).

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` in user code does not
    swallow an abort; not KeyboardInterrupt itself, which asyncio re-raises out of the loop.
    A console's thread wrapper catches it (it would otherwise leave ``to_thread.run_sync`` as
    an error rather than as the cancellation the console asked for).
    """


class CommandCalledWithoutLoop(RuntimeError):
    """A blocking command was called from a thread that has no way back to an event loop."""


_registrations: list[anyio.lowlevel.EventLoopToken] = []


def use_event_loop(token: anyio.lowlevel.EventLoopToken | None = None) -> None:
    """Register the event loop that blocking calls from foreign threads use (call it on the
    loop; ``token`` defaults to the current loop's). A session does this when it starts;
    registrations nest (several sessions on one loop), the last one wins."""
    global _global_token
    _global_token = token if token is not None else anyio.lowlevel.current_token()
    _registrations.append(_global_token)


def forget_event_loop(token: anyio.lowlevel.EventLoopToken | None = None) -> None:
    """Undo one :func:`use_event_loop` (when that session stops)."""
    global _global_token
    if token is None and _registrations:
        token = _registrations[-1]
    if token in _registrations:
        _registrations.remove(token)
    _global_token = _registrations[-1] if _registrations else None


def on_event_loop_thread() -> bool:
    """True when called on a thread that runs an asyncio event loop right now."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_blocking(func: Callable[P, Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` on the event loop from a worker thread; block until done."""
    call = functools.partial(func, *args, **kwargs)
    try:
        try:
            return anyio.from_thread.run(call)
        except anyio.NoEventLoopError:
            token = _fallback_token.get() or _global_token
            if token is None:
                raise CommandCalledWithoutLoop(
                    f"{getattr(func, '__name__', func)}() was called from a thread that is not "
                    "an anyio worker thread and no session event loop is registered: use "
                    "`await` in async code, run the code through anyio.to_thread.run_sync, "
                    "or start a Session first"
                ) from None
            return anyio.from_thread.run(call, token=token)
    except (concurrent.futures.CancelledError, asyncio.CancelledError):
        # The command was cancelled on the loop (Ctrl-C): the thread stops here too.
        raise CommandCancelled(f"{getattr(func, '__name__', 'command')} cancelled") from None


def command(func: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Any]:
    """Make a coroutine function callable from async code and, blocking, from worker threads.

    See the module docstring. The result of the call on the loop thread is the coroutine
    (await it); in a worker thread it is the coroutine's result.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if on_event_loop_thread():
            return func(*args, **kwargs)
        return run_blocking(func, *args, **kwargs)

    wrapper.aio = func  # type: ignore[attr-defined]
    wrapper.__blissng_command__ = True  # type: ignore[attr-defined]
    return wrapper
