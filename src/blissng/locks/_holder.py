"""Who is asking for a lock: the session, the console and what it runs.

The holder travels in a context variable: a session sets it when it runs a command, so a
motor move deep inside a scan takes its lock in the name of that session and console without
every call passing it along. Messages about a busy device name this holder.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import socket
from collections.abc import Iterator


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class Holder:
    """An owner of device locks. Locks are reentrant for the same ``key``."""

    session: str = ""
    console: str = ""
    command: str = ""
    process: str = dataclasses.field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}"
    )

    @property
    def key(self) -> str:
        """Identity for reentrancy: one session's console in one process."""
        return f"{self.process}/{self.session}/{self.console}"

    def describe(self) -> str:
        who = f"session {self.session!r}" if self.session else "a script"
        if self.console:
            who += f", console {self.console!r}"
        if self.command:
            who += f", running {self.command!r}"
        return f"{who} (process {self.process})"

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Holder:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


_current_holder: contextvars.ContextVar[Holder | None] = contextvars.ContextVar(
    "blissng_lock_holder", default=None
)


def current_holder() -> Holder:
    """The holder of the running command, or an anonymous one for this process."""
    return _current_holder.get() or Holder()


@contextlib.contextmanager
def holding_as(holder: Holder) -> Iterator[Holder]:
    """Run a block (and the tasks and threads it starts) in the name of ``holder``."""
    token = _current_holder.set(holder)
    try:
        yield holder
    finally:
        _current_holder.reset(token)


def set_holder(holder: Holder) -> None:
    """Make ``holder`` current for the rest of the calling task (a task of its own, such as a
    session's command; elsewhere prefer :func:`holding_as`)."""
    _current_holder.set(holder)
