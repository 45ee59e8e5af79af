"""Measurement groups: named sets of counters, some enabled, some disabled (as in BLISS).

A scan given no counters counts the enabled counters of the active measurement group.
Which members are disabled is a user choice that survives restarts: it is kept in the
settings Redis (``SettingsStore``), one object per group (``mg:<name>``).

Members are counters or counter controllers (``Acquirable``: all its counters); they are named
by ``fullname`` (``controller:counter``) when they have one, else by ``name``, and selected by
shell-style patterns: ``MG.disable("diode*")``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from blissng.errors import BlissngError
from blissng.redisdb import ObjectSettings, SettingsStore

from ._bridge import command
from ._counter_selection import counter_fullname, expand_counters


def _short(fullname: str) -> str:
    """``sim:diode`` / ``sim.diode`` -> ``diode``."""
    return fullname.replace(":", ".").rsplit(".", 1)[-1]


class MeasurementGroupSettings(BaseModel):
    disabled: list[str] = []


class MeasurementGroupError(BlissngError, ValueError):
    """A pattern that selects nothing, or an unknown counter."""


class MeasurementGroup:
    """A named set of counters with enabled and disabled members.

    ``enable``/``disable`` are commands (await them in async code; in a console thread they
    block until the settings are stored).
    """

    class Parameters(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        counters: list[Any]
        disabled: list[str] = []

    def __init__(
        self,
        name: str,
        counters: Iterable[Any],
        *,
        settings: SettingsStore | None = None,
        disabled: Iterable[str] = (),
    ) -> None:
        self.name = name
        self._members = list(counters)
        self._counters = expand_counters(self._members)
        names = [counter_fullname(c) for c in self._counters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise MeasurementGroupError(
                f"measurement group {name!r} has the counter(s) {', '.join(duplicates)} twice"
            )
        self._by_name = dict(zip(names, self._counters, strict=True))
        defaults = MeasurementGroupSettings(disabled=list(disabled))
        self._settings: ObjectSettings[MeasurementGroupSettings] | None = (
            settings.object(f"mg:{name}", MeasurementGroupSettings, defaults)
            if settings is not None
            else None
        )
        self._disabled: set[str] = set(disabled) & set(self._by_name)

    @classmethod
    def from_config(cls, name: str, params: Parameters, context: Any) -> MeasurementGroup:
        """Built by the configuration: ``class: MeasurementGroup``, ``counters: [$a, $b]``."""
        settings = getattr(context, "settings", None)
        return cls(name, params.counters, settings=settings, disabled=params.disabled)

    async def connect(self) -> None:
        """Load the stored enabled/disabled choice (idempotent)."""
        await self.load()

    async def load(self) -> None:
        if self._settings is not None:
            values = await self._settings.load()
            self._disabled = set(values.disabled) & set(self._by_name)

    # ------------------------------------------------------------------ members

    @property
    def available(self) -> list[str]:
        """Names of every member counter."""
        return list(self._by_name)

    @property
    def enabled(self) -> list[str]:
        return [n for n in self._by_name if n not in self._disabled]

    @property
    def disabled(self) -> list[str]:
        return [n for n in self._by_name if n in self._disabled]

    @property
    def counters(self) -> list[Any]:
        """The enabled counters (what a scan counts)."""
        return [c for n, c in self._by_name.items() if n not in self._disabled]

    @property
    def all_counters(self) -> list[Any]:
        return list(self._counters)

    def _select(self, patterns: Sequence[Any]) -> set[str]:
        if not patterns:
            raise MeasurementGroupError(
                f"{self.name}: give counter names or patterns, e.g. {self.name}.enable('diode*')"
            )
        selected: set[str] = set()
        for pattern in patterns:
            text = pattern if isinstance(pattern, str) else counter_fullname(pattern)
            hits = {
                n
                for n in self._by_name
                if fnmatch.fnmatchcase(n, text) or fnmatch.fnmatchcase(_short(n), text)
            }
            if not hits:
                raise MeasurementGroupError(
                    f"measurement group {self.name!r} has no counter matching {text!r}; "
                    f"it has: {', '.join(self._by_name) or 'none'}"
                )
            selected |= hits
        return selected

    async def _store(self) -> None:
        if self._settings is not None:
            await self._settings.set(disabled=sorted(self._disabled))

    @command
    async def enable(self, *patterns: Any) -> list[str]:
        """Enable the counters matching ``patterns`` (names, shell patterns or counters)."""
        self._disabled -= self._select(patterns)
        await self._store()
        return self.enabled

    @command
    async def disable(self, *patterns: Any) -> list[str]:
        """Disable the counters matching ``patterns``."""
        self._disabled |= self._select(patterns)
        await self._store()
        return self.enabled

    @command
    async def enable_all(self) -> list[str]:
        self._disabled.clear()
        await self._store()
        return self.enabled

    @command
    async def disable_all(self) -> list[str]:
        self._disabled = set(self._by_name)
        await self._store()
        return self.enabled

    def __info__(self) -> str:
        lines = [f"MeasurementGroup: {self.name}", "  Enabled:"]
        lines += [f"    {n}" for n in self.enabled] or ["    (none)"]
        lines.append("  Disabled:")
        lines += [f"    {n}" for n in self.disabled] or ["    (none)"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<MeasurementGroup {self.name}: {len(self.enabled)}/{len(self._by_name)} enabled>"
