"""What a console needs from a session: a name, a namespace and a command runner.

The session layer's ``Session`` satisfies this protocol; tests and scripts can use
:class:`SimpleSession`, a name and a namespace with the same runner
(:class:`blissng.session.CommandRunner`) and no devices.
"""

from __future__ import annotations

from typing import Any, Protocol, Self, runtime_checkable

from blissng.session import CommandRunner, SessionOutput


@runtime_checkable
class ShellSession(Protocol):
    """A session as the consoles see it."""

    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> dict[str, Any]: ...

    @property
    def runner(self) -> CommandRunner: ...


class SimpleSession:
    """A session that is just a name and a namespace (tests, scripts, a bare shell).

    ``async with SimpleSession(name) as session`` runs its commands' task group.
    """

    def __init__(self, name: str, namespace: dict[str, Any] | None = None) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(
                f"session name {name!r} is not valid: use letters, digits, '_' and '-'"
            )
        self.name = name
        self.namespace: dict[str, Any] = namespace if namespace is not None else {}
        self.output = SessionOutput()
        self.runner = CommandRunner(name, self.namespace, output=self.output)

    def __repr__(self) -> str:
        return f"<SimpleSession {self.name}>"

    @property
    def started(self) -> bool:
        return self.runner.running

    @property
    def commands(self) -> list[Any]:
        return self.runner.commands

    async def __aenter__(self) -> Self:
        await self.runner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self.runner.__aexit__(*exc_info)
