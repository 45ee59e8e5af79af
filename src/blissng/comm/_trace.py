"""Switch the per-device trace of sent and received bytes on and off at run time.

``debugon(m1)`` works on a connection, a device name, or any object holding a connection
(an axis -> its controller -> its connection): the trace goes to the ``logging`` logger
``blissng.comm.<device>`` at DEBUG level.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from blissng.comm._connection import LOGGER_PREFIX, Connection

_MAX_DEPTH = 4  # an axis -> its controller -> its client -> its connection


def _find_connections(obj: Any, depth: int, seen: set[int], found: list[Connection]) -> None:
    if id(obj) in seen or depth > _MAX_DEPTH:
        return
    seen.add(id(obj))
    if isinstance(obj, Connection):
        found.append(obj)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            _find_connections(item, depth + 1, seen, found)
        return
    if isinstance(obj, dict):
        for item in obj.values():
            _find_connections(item, depth + 1, seen, found)
        return
    module = type(obj).__module__ or ""
    if depth > 0 and not module.startswith("blissng"):
        return
    attributes = getattr(obj, "__dict__", None)
    if attributes is None:
        return
    for value in list(attributes.values()):
        _find_connections(value, depth + 1, seen, found)


def _logger_names(target: Any) -> list[str]:
    if isinstance(target, str):
        return [f"{LOGGER_PREFIX}.{target}"]
    found: list[Connection] = []
    _find_connections(target, 0, set(), found)
    if not found:
        raise ValueError(
            f"{target!r} holds no blissng.comm connection: pass a connection, a device name, "
            "or an object that holds a connection"
        )
    return sorted({conn.logger.name for conn in found})


def _ensure_handler() -> None:
    base = logging.getLogger(LOGGER_PREFIX)
    if base.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    base.addHandler(handler)


def debugon(*targets: Any) -> list[str]:
    """Trace every byte sent to and received from these devices; returns the logger names."""
    names = [name for target in targets for name in _logger_names(target)]
    _ensure_handler()
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    return names


def debugoff(*targets: Any) -> list[str]:
    """Stop tracing these devices; returns the logger names."""
    names = [name for target in targets for name in _logger_names(target)]
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)
    return names
