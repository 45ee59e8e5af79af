"""Lazy package faces: a face that names its API in ``__all__`` without importing it.

A package's face (its ``__init__``) re-exports the names of its private modules. Where those
modules are heavy and most importers need none of them (the shell's ptpython, the web's
Starlette and uvicorn, the simulators' pytango and caproto), the face imports each name's
module on first use instead (PEP 562)::

    _MODULES = {"ShellHub": "._hub", ...}   # name -> the private module that defines it
    __getattr__, __dir__ = lazy_names(__name__, _MODULES)

Type checkers see the names through an ``if TYPE_CHECKING:`` import block beside it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, modules: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``'s face: ``modules`` maps each lazy
    name to the module (relative to ``package``) that defines it; a name is imported once,
    then kept in the face like an eager one."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        face = sys.modules[package]
        return sorted({*vars(face), *getattr(face, "__all__", ()), *modules})

    return __getattr__, __dir__


__all__ = ["lazy_names"]
