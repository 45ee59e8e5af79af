"""The API's OpenAPI 3.1 description, derived from its route declarations.

Each endpoint of :mod:`blissng.web._api` is declared once, as an :class:`Endpoint` (method,
path, the ``Api`` method that answers, summary, query parameters, body and responses); the
Starlette routes and the ``paths`` of the description are both made from those declarations,
so they cannot disagree. Path parameters come from the path itself (``{session}``, ``{id}``).
The JSON shapes the endpoints answer with and the bodies they take are pydantic models
(:mod:`blissng.web._schemas`): the endpoints name them, and the description's components are
derived from the models they name (``model_json_schema``, with the models those refer to).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from ._schemas import Error

ERROR = Error
"""The model of every error answer: ``{"error": "what went wrong"}``."""

REF_TEMPLATE = "#/components/schemas/{model}"

PATH_PARAMETER_TYPES = {"id": "integer"}  # any other path parameter is a string

INFO = {
    "title": "blissng server API",
    "version": "1",
    "description": "Sessions, objects, commands and events of a running blissng server. "
    "Authenticate with ?token=, a Bearer header or the web shell's cookie. Events: "
    "websocket /api/events?session=NAME (JSON messages of type hello, scan, command, "
    "positions).",
}

SECURITY_SCHEMES = {
    "token": {"type": "apiKey", "in": "query", "name": "token"},
    "bearer": {"type": "http", "scheme": "bearer"},
}


@dataclasses.dataclass(frozen=True)
class Query:
    """A query parameter (``?read=true``)."""

    name: str
    type: str  # a JSON schema type
    description: str


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One HTTP endpoint of the API: its route and its description."""

    method: str
    path: str
    handler: str
    """The name of the ``Api`` method that answers."""
    summary: str
    responses: Mapping[int, type[BaseModel] | tuple[type[BaseModel], str]]
    """Status -> the model answered (``ERROR`` for an error), or (model, description)."""
    query: tuple[Query, ...] = ()
    body: type[BaseModel] | None = None
    """The model of the JSON body it requires."""

    def path_parameters(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    def models(self) -> list[type[BaseModel]]:
        """The models it answers with and takes."""
        answered = [a[0] if isinstance(a, tuple) else a for a in self.responses.values()]
        return answered + ([self.body] if self.body is not None else [])


def _reference(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _response(answer: type[BaseModel] | tuple[type[BaseModel], str]) -> dict[str, Any]:
    model, description = answer if isinstance(answer, tuple) else (answer, "OK")
    if model is ERROR:
        description = "error"
    return {
        "description": description,
        "content": {"application/json": {"schema": _reference(model)}},
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": endpoint.summary}
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": PATH_PARAMETER_TYPES.get(name, "string")},
        }
        for name in endpoint.path_parameters()
    ]
    parameters += [
        {"name": q.name, "in": "query", "schema": {"type": q.type}, "description": q.description}
        for q in endpoint.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _reference(endpoint.body)}},
        }
    operation["responses"] = {
        str(status): _response(answer) for status, answer in endpoint.responses.items()
    }
    return operation


def component_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """The JSON schemas of ``models`` and of the models they refer to, by name."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return dict(sorted(schemas.items()))


def openapi_schema(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``endpoints``."""
    paths: dict[str, dict[str, Any]] = {}
    models: dict[str, type[BaseModel]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
        models.update((model.__name__, model) for model in endpoint.models())
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "security": [{"token": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": component_schemas(models.values()),
        },
    }
