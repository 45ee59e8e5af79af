"""Persistent, typed per-object settings in Redis hashes (a motor's offset, velocity, limits).

A setting is a field of a pydantic model. The configuration gives the defaults; what a user
changed is stored in the hash ``settings:<object>`` of the settings server, one field per
setting, JSON-encoded, and overrides the default from then on (until ``reset``).
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

import redis.asyncio as aredis
from pydantic import BaseModel, ValidationError

from blissng.errors import BlissngError

from ._connection import text

M = TypeVar("M", bound=BaseModel)


class SettingsError(BlissngError, ValueError):
    """A stored or given setting does not fit the object's settings model."""


class SettingsStore:
    """The settings of every object, on one (async) Redis client of the settings server."""

    def __init__(self, redis: aredis.Redis, prefix: str = "settings") -> None:
        self.redis = redis
        self.prefix = prefix

    def object(self, name: str, model: type[M], defaults: M | None = None) -> ObjectSettings[M]:
        return ObjectSettings(self, name, model, defaults if defaults is not None else model())


class ObjectSettings(Generic[M]):
    """The settings of one object: ``values`` is the current, validated model."""

    def __init__(self, store: SettingsStore, name: str, model: type[M], defaults: M) -> None:
        self.store = store
        self.name = name
        self.model = model
        self.defaults = defaults
        self.values: M = defaults
        self.key = f"{store.prefix}:{name}"

    async def load(self) -> M:
        """Stored values over the configuration's defaults. Unknown stored fields are ignored
        (a setting removed from the model must not break start-up)."""
        raw = await self.store.redis.hgetall(self.key)
        stored: dict[str, Any] = {}
        for field, value in raw.items():
            key = text(field)
            if key in self.model.model_fields:
                stored[key] = json.loads(value)
        merged = {**self.defaults.model_dump(), **stored}
        try:
            self.values = self.model.model_validate(merged)
        except ValidationError as exc:
            raise SettingsError(
                f"stored settings of {self.name!r} are invalid ({_problems(exc)}); "
                f"fix them or reset: ObjectSettings.reset()"
            ) from None
        return self.values

    async def set(self, **changes: Any) -> M:
        """Validate, store and apply ``changes``; nothing is stored if any is invalid."""
        unknown = set(changes) - set(self.model.model_fields)
        if unknown:
            raise SettingsError(f"{self.name!r} has no setting {', '.join(sorted(unknown))}")
        try:
            values = self.model.model_validate({**self.values.model_dump(), **changes})
        except ValidationError as exc:
            raise SettingsError(f"invalid setting for {self.name!r}: {_problems(exc)}") from None
        dumped = values.model_dump(mode="json")
        await self.store.redis.hset(
            self.key, mapping={field: json.dumps(dumped[field]) for field in changes}
        )
        self.values = values
        return values

    async def reset(self, *fields: str) -> M:
        """Forget stored values (all, or the given fields): back to the configuration's."""
        if fields:
            await self.store.redis.hdel(self.key, *fields)
        else:
            await self.store.redis.delete(self.key)
        return await self.load()


def _problems(exc: ValidationError) -> str:
    """pydantic's errors on one line: ``velocity: Input should be > 0 (got -1)``."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(parts)
