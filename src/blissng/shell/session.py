"""What a console needs from a session: a name and a namespace (and optionally a context).

The session layer's ``Session`` satisfies this protocol; tests and scripts can use
:class:`SimpleSession`. A session may also offer ``command_context()``, a context manager
entered around every command a console runs (the session makes its scan context current
there), so that the shell does not need to know what a session puts in it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ShellSession(Protocol):
    """A session as the consoles see it."""

    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> dict[str, Any]: ...


def command_context(session: ShellSession) -> AbstractContextManager[Any]:
    """The session's per-command context manager, or a no-op when it has none."""
    factory = getattr(session, "command_context", None)
    if factory is None:
        return contextlib.nullcontext()
    context: AbstractContextManager[Any] = factory()
    return context


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
