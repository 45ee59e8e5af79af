"""Devices without ``await`` at the prompt: the synchronous facade, derived from the async API.

Devices are written once, async (``async def move``, ``async def set_velocity``): that API is
the source of truth, and ``await m1.move(2)`` works in async code. User code typed at a
console, and the plain ``def`` functions users write, run in a worker thread (the session's
command runner), where BLISS users type ``m1.move(2)`` and ``m1.velocity = 2``. This module
derives the blocking form from the async API, generically, for any class:

- every public coroutine method (``move``, ``read_position``, ``stop``, ``set_saving``...)
  becomes a :func:`blissng.scans.command`: called on the event loop it returns the
  coroutine (``await m1.move(2)`` as before); called from a worker thread it runs on the
  loop and blocks until done (``m1.move(2)`` returns when the motor stopped), inside the
  command's cancel scope, so Ctrl-C stops the motor;
- every read-only property ``x`` next to a coroutine method ``set_x`` becomes writable:
  ``m1.velocity = 2`` calls ``set_velocity(2)`` (stored in the settings, pushed to the
  controller), ``m1.limits = (-5, 5)`` calls ``set_limits(-5, 5)`` (a tuple is spread over a
  setter that takes several values), ``m1.position = 0`` ``set_position(0)`` (BLISS: set the
  user position, i.e. the offset), ``m1.dial = 0`` ``set_dial(0)``. On the event loop such
  an assignment would have to block it: it raises :class:`FacadeError` saying what to await;
- reading stays what it was (``m1.position``: the last known position, no I/O, as BLISS's
  cached one).

:func:`synchronous` applies it to an object in place: the object's class becomes a subclass
derived once per class (same name, same module; ``isinstance`` and identity unchanged), so
the object is the same everywhere (the scans, ``wa()``, the API, another session) and
nothing is written per device class. A session applies it to the objects it exposes.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from blissng.errors import BlissngError
from blissng.scans import command, on_event_loop_thread

T = TypeVar("T")

_DERIVED = "__blissng_facade_of__"
_lock = threading.Lock()
_derived: dict[type, type] = {}


class FacadeError(BlissngError, RuntimeError):
    """A blocking use of a device where it cannot block (on the event loop)."""


def synchronous(obj: T) -> T:
    """Give ``obj`` the synchronous facade (in place) and return it. Objects without public
    coroutine methods, classes, modules and functions are left as they are."""
    cls = type(obj)
    if isinstance(obj, type) or cls.__dict__.get(_DERIVED) is not None:
        return obj
    derived = facade_class(cls)
    if derived is not cls:
        try:
            obj.__class__ = derived
        except TypeError:  # a built-in or an incompatible layout: leave it async-only
            pass
    return obj


def facade_class(cls: type) -> type:
    """The class derived from ``cls`` with the facade (``cls`` itself when it has no public
    coroutine method). Derived once per class."""
    with _lock:
        derived = _derived.get(cls)
        if derived is None:
            derived = _derive(cls)
            _derived[cls] = derived
        return derived


def _derive(cls: type) -> type:
    if cls.__module__ == "builtins" or inspect.ismodule(cls):
        return cls
    attributes: dict[str, Any] = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        try:
            member = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        blocking = _blocking(member)
        if blocking is not None:
            attributes[name] = blocking
    for name in dir(cls):
        member = inspect.getattr_static(cls, name, None)
        if isinstance(member, property) and member.fset is None and not name.startswith("_"):
            setter = inspect.getattr_static(cls, f"set_{name}", None)
            if _coroutine_function(setter) is not None:
                attributes[name] = property(member.fget, _assigner(name), member.fdel,
                                            member.__doc__)  # fmt: skip
    if not attributes:
        return cls
    attributes.update(
        {
            "__slots__": (),  # the same layout: the object's class can be swapped
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            _DERIVED: cls,
        }
    )
    return type(cls)(cls.__name__, (cls,), attributes)


def _coroutine_function(member: Any) -> Callable[..., Any] | None:
    """The coroutine function behind a plain, static or class method (None otherwise, and
    for methods that already work both ways)."""
    func = member.__func__ if isinstance(member, staticmethod | classmethod) else member
    if getattr(func, "__blissng_command__", False):
        return None
    if inspect.isfunction(func) and inspect.iscoroutinefunction(func):
        return func
    return None


def _blocking(member: Any) -> Any:
    func = _coroutine_function(member)
    if func is None:
        return None
    wrapped = command(func)
    if isinstance(member, staticmethod):
        return staticmethod(wrapped)
    if isinstance(member, classmethod):
        return classmethod(wrapped)
    return wrapped


def _assigner(name: str) -> Callable[[Any, Any], None]:
    """``obj.name = value`` -> ``obj.set_name(value)``, blocking (from a worker thread)."""

    def assign(self: Any, value: Any) -> None:
        setter = getattr(self, f"set_{name}")
        if on_event_loop_thread():
            raise FacadeError(
                f"{_label(self)}.{name} = ... cannot block the event loop: in async code use "
                f"`await {_label(self)}.set_{name}(...)`"
            )
        args = value if isinstance(value, tuple) and _takes_several(setter) else (value,)
        setter(*args)

    assign.__name__ = name
    return assign


def _takes_several(setter: Any) -> bool:
    """Whether a setter takes more than one positional value (``set_limits(low, high)``)."""
    try:
        parameters = inspect.signature(getattr(setter, "aio", setter)).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
    ]
    return len(positional) > 1


def _label(obj: Any) -> str:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) and name.isidentifier() else type(obj).__name__


__all__ = ["FacadeError", "facade_class", "synchronous"]
