"""What the API offers, declared once: its endpoints (:data:`ENDPOINTS`) and its OpenAPI
description (:func:`openapi_schema`).

Each endpoint names the ``Api`` method that answers (:mod:`blissng.web._api` makes the routes
from these) and the models of its answers and body (:mod:`blissng.web._schemas`, from which the
description's components are derived). The events websocket is described in the text of the
description (:data:`blissng.web._openapi.INFO`).
"""

from __future__ import annotations

import functools
from typing import Any

from ._openapi import ERROR, Endpoint, Query
from ._openapi import openapi_schema as describe
from ._schemas import (
    Command,
    CommandRequest,
    Commands,
    Locks,
    Object,
    Objects,
    Server,
    Session,
    Sessions,
)

SESSION_MISSING = {404: ERROR}
READ = Query("read", "boolean", "read motor positions from the hardware first")

ENDPOINTS = (
    Endpoint(
        "GET",
        "/api/server",
        "get_server",
        "the server: sessions, background tasks, writer, Redis URLs",
        {200: Server, 403: ERROR},
    ),
    Endpoint("GET", "/api/sessions", "list_sessions", "every session", {200: Sessions, 403: ERROR}),
    Endpoint(
        "GET",
        "/api/sessions/{session}",
        "get_session",
        "one session",
        {200: Session, **SESSION_MISSING},
    ),
    Endpoint(
        "GET",
        "/api/sessions/{session}/objects",
        "list_objects",
        "the session's objects and their state",
        {200: Objects, **SESSION_MISSING},
        query=(READ,),
    ),
    Endpoint(
        "GET",
        "/api/sessions/{session}/objects/{name}",
        "get_object",
        "one object's state",
        {200: Object, **SESSION_MISSING},
        query=(READ,),
    ),
    Endpoint(
        "POST",
        "/api/sessions/{session}/commands",
        "run_command",
        "run Python in the session (as typed at a console)",
        {
            200: (Command, "ended"),
            202: (Command, "still running"),
            400: ERROR,
            **SESSION_MISSING,
        },
        body=CommandRequest,
    ),
    Endpoint(
        "GET",
        "/api/sessions/{session}/commands",
        "list_commands",
        "the running and recent commands of the session (every console and API client)",
        {200: Commands, **SESSION_MISSING},
    ),
    Endpoint(
        "GET",
        "/api/sessions/{session}/commands/{id}",
        "get_command",
        "a command's state",
        {200: Command, **SESSION_MISSING},
        query=(Query("wait", "number", "wait up to this many seconds for its end"),),
    ),
    Endpoint(
        "POST",
        "/api/sessions/{session}/commands/{id}/cancel",
        "cancel_command",
        "cancel a command (Ctrl-C: its scan aborts)",
        {200: Command, **SESSION_MISSING},
    ),
    Endpoint("GET", "/api/locks", "list_locks", "device locks held (lslock)", {200: Locks}),
)
"""Every HTTP endpoint of the API, declared once: the routes and the OpenAPI description are
made from these (the events websocket is described in the description's text)."""


@functools.cache
def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API, from :data:`ENDPOINTS`: made once (deriving the
    models' schemas takes milliseconds of the event loop, and anyone may ask for it without a
    token), then the same dict for every request; read it, do not change it."""
    return describe(ENDPOINTS)
