"""Find the Python class a ``class:`` value names (a short name or an import path)."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from ._errors import ConfigError
from ._registry import CLASSES


def import_path(class_name: str) -> str:
    """A short name's import path, or the name itself if it already is one."""
    return CLASSES.get(class_name, class_name)


def resolve_class(class_name: str) -> type[Any]:
    """``"pkg.mod:Class"``, ``"pkg.mod.Class"`` or a short name from the registry.

    Raises :class:`ConfigError` (without location: the caller adds it) saying what to do.
    """
    path = import_path(class_name)
    if ":" in path:
        module_name, _, attr = path.partition(":")
    elif "." in path:
        module_name, _, attr = path.rpartition(".")
    else:
        close = difflib.get_close_matches(class_name, list(CLASSES), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ConfigError(
            f"unknown class {class_name!r}{hint}: use a registered short name "
            "(blissng.config.CLASSES) or an import path 'package.module:Class'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"unknown class {class_name!r}: cannot import module {module_name!r} ({exc})"
        ) from None
    except Exception as exc:  # the module itself is broken: say so, do not crash the load
        raise ConfigError(
            f"class {class_name!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"unknown class {class_name!r}: module {module_name!r} has no {attr!r}"
            ) from None
    if not isinstance(obj, type):
        raise ConfigError(f"class {class_name!r} names {obj!r}, which is not a class")
    return obj
