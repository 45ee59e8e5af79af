"""Helpers for classes built from the configuration.

A configurable class needs a pydantic model ``Parameters`` and a class method
``from_config(name, params, context)``. For simple classes whose constructor takes the name
and the parameters as keyword arguments, :class:`Configurable` writes ``from_config`` for you::

    class Diode(Configurable):
        class Parameters(ConfigModel):
            unit: str = "V"
            controller: Any            # "$ctrl" in the YAML: the built object

        def __init__(self, name: str, unit: str, controller: Any) -> None: ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Self

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ._config import ConfigContext


class ConfigModel(BaseModel):
    """Parameters base: unknown keys are errors (typos), objects allowed as values."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class Configurable:
    """``from_config`` that calls ``cls(name, **parameters)`` (shallow: objects stay objects)."""

    Parameters: ClassVar[type[BaseModel]] = ConfigModel

    @classmethod
    def from_config(cls, name: str, params: BaseModel, context: ConfigContext) -> Self:
        fields = {field: getattr(params, field) for field in type(params).model_fields}
        return cls(name, **fields)  # type: ignore[call-arg]
