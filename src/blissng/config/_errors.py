"""Configuration errors that say where: file, line, object and field.

Every problem found in the configuration becomes a :class:`ConfigError`. Its message is one line
a user can act on, e.g.::

    config/motors.yml:12: object 'm1', field 'velocity': Input should be a valid number,
    unable to parse string as a number (got 'fast')
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from blissng.errors import BlissngError


@dataclasses.dataclass(frozen=True)
class Location:
    """A place in a configuration file; ``line`` counts from 1 (0: the whole file)."""

    file: Path
    line: int = 0

    def __str__(self) -> str:
        shown = _shown_path(self.file)
        return f"{shown}:{self.line}" if self.line else shown


def _shown_path(path: Path) -> str:
    """Relative to the working directory when below it (shorter), absolute otherwise."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


class ConfigError(BlissngError):
    """A problem in the configuration, with where it is and what it concerns.

    ``location`` is the file and line, ``object`` the name of the object concerned (if any),
    ``field`` the parameter path (``"axes[0].velocity"``) and ``problem`` the bare reason.
    ``str(error)`` joins them into one line.
    """

    def __init__(
        self,
        problem: str,
        *,
        location: Location | None = None,
        object: str | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.location = location
        self.object = object
        self.field = field
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = []
        if self.object is not None:
            parts.append(f"object {self.object!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        what = ", ".join(parts)
        text = f"{what}: {self.problem}" if what else self.problem
        return f"{self.location}: {text}" if self.location else text

    @property
    def file(self) -> Path | None:
        return self.location.file if self.location else None

    @property
    def line(self) -> int | None:
        return self.location.line if self.location else None

    def __reduce__(self):  # keep keyword arguments through pickling (worker processes)
        return (
            _rebuild,
            (self.problem, self.location, self.object, self.field),
        )


def _rebuild(
    problem: str, location: Location | None, obj: str | None, field: str | None
) -> ConfigError:
    return ConfigError(problem, location=location, object=obj, field=field)


def field_path(loc: tuple[str | int, ...]) -> str:
    """``("axes", 0, "velocity")`` -> ``"axes[0].velocity"``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
