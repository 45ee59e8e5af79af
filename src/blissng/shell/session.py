"""What a console needs from a session: a name and a namespace (and optionally a context).

The session layer's ``Session`` satisfies this protocol; tests and scripts can use
:class:`SimpleSession`. A session may also offer ``command_context()``, a context manager
entered around every command a console runs (the session makes its scan context current
there), so that the shell does not need to know what a session puts in it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ShellSession(Protocol):
    """A session as the consoles see it."""

    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> dict[str, Any]: ...


class TextOutput(Protocol):
    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


@contextlib.contextmanager
def command_context(
    session: ShellSession, output: TextOutput, console: str = "", command: str = ""
) -> Iterator[None]:
    """What a command of ``session`` runs in: the device-lock holder naming the session, the
    console and the command (so "device busy" messages say who holds it); then the session's
    own ``command_context()`` if it has one, or, for a ``blissng.session.Session``, its scan
    context with ``output`` (the console) made current, so that scans display their table in
    the console that started them."""
    from blissng.locks import Holder, holding_as

    with holding_as(Holder(session.name, console, command[:80])):
        factory = getattr(session, "command_context", None)
        scan_context = getattr(session, "scan_context", None)
        if factory is not None:
            with factory():
                yield
        elif scan_context is not None:
            from blissng.scans.context import use_context

            with use_context(scan_context(output)):
                yield
        else:
            yield


class SimpleSession:
    """A session that is just a name and a namespace (tests, scripts, a bare shell)."""

    def __init__(self, name: str, namespace: dict[str, Any] | None = None) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(
                f"session name {name!r} is not valid: use letters, digits, '_' and '-'"
            )
        self.name = name
        self.namespace: dict[str, Any] = namespace if namespace is not None else {}

    @contextlib.contextmanager
    def command_context(self) -> Iterator[None]:
        yield
