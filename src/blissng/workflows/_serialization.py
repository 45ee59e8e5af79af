"""The serializer of blissng's Celery messages and results: JSON, plus numpy arrays.

Not pickle: a pickled message runs code when it is loaded, so anyone who can write to the
broker could run code on the workers (Celery refuses pickle to a worker running as root for
that reason). JSON cannot, and numpy arrays, the usual inputs and results of a workflow, travel
as ``{"__ndarray__": base64, "dtype", "shape"}``; numpy scalars become Python numbers. Tuples
come back as lists. Anything else that JSON cannot carry is an error naming its type.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

NAME = "blissng-json"
CONTENT_TYPE = "application/x-blissng-json"
_ARRAY = "__ndarray__"


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return value.tolist()
        data = np.ascontiguousarray(value)
        return {
            _ARRAY: base64.b64encode(data.tobytes()).decode("ascii"),
            "dtype": data.dtype.str,
            "shape": list(data.shape),
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(
        f"a {type(value).__name__} cannot travel to or from a Celery worker (JSON and numpy "
        "arrays only): return plain data from the workflow"
    )


def _hook(obj: dict[str, Any]) -> Any:
    if _ARRAY in obj:
        raw = base64.b64decode(obj[_ARRAY])
        return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    return obj


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, allow_nan=True)


def loads(text: str | bytes) -> Any:
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8")
    return json.loads(text, object_hook=_hook)


def register() -> None:
    """Make the serializer known to kombu (in the client and in the worker)."""
    from kombu.serialization import register as kombu_register

    kombu_register(NAME, dumps, loads, content_type=CONTENT_TYPE, content_encoding="utf-8")
