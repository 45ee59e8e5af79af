"""The root of blissng's errors, and the one exception that says a command was stopped.

At the bottom of the layers (it imports nothing), so that every package derives its errors
from here. docs/errors.md draws the whole tree.

- :class:`BlissngError` is the root of every error blissng raises to its users. Each layer has
  its family below it (``DeviceError``, ``CommunicationError``, ``DataError``, ...), and each
  error keeps the builtin base that says what kind of error it is: a refused move is a
  ``ValueError``, a device that does not answer a ``TimeoutError``, an unknown axis a
  ``LookupError``. So ``except BlissngError`` catches what blissng raised, and code that only
  knows the builtins still works.
- :class:`Aborted` is how a stopped command ends, wherever one waits for it: a command
  cancelled (Ctrl-C, ``cmd.cancel()``), a scan aborted (``scan.abort()``), a workflow job
  cancelled. It is *not* an error: like ``KeyboardInterrupt`` it derives from
  ``BaseException`` only, so neither ``except Exception`` nor ``except BlissngError``
  swallows a stop. (Inside a command's own thread, Ctrl-C arrives as Python's
  ``KeyboardInterrupt``, as in BLISS: that is what interrupts pure Python code.)
"""

from __future__ import annotations


class BlissngError(Exception):
    """The root of every error blissng raises; the message says what went wrong and what to
    do."""


class Aborted(BaseException):
    """A command, a scan or a job was stopped on request (Ctrl-C, ``cancel()``, ``abort()``).

    What awaiting a stopped command (``await cmd.wait()``), scan or job raises, and what a
    blocking scan command raises in a thread that is not its command's own. Not an error:
    catch it by name (``except Aborted``) to clean up, and let it go on.
    """


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``'s nested exception groups, depth first (``[exc]`` if it is
    not a group): what a task group's failure is made of, for choosing the one to show."""
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for sub in exc.exceptions for leaf in leaf_exceptions(sub)]


def sole_exception(exc: BaseException) -> BaseException:
    """The one exception inside nested single-exception groups (a task group's single
    failure), or ``exc`` itself: what to name when saying what went wrong."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


__all__ = ["Aborted", "BlissngError", "leaf_exceptions", "sole_exception"]
