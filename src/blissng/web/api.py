"""The server's API for GUIs and scripts: HTTP + JSON, and a websocket of events.

Mounted on the web shell's Starlette app (same port, same token, same Host and Origin
checks: :mod:`blissng.web.security`). Routes (all under ``/api``; OpenAPI at
``/api/openapi.json``):

- ``GET /api/server``: sessions, background tasks, writer, the data Redis URL (readers can
  follow scans there with ``blissng.data.DataStore``);
- ``GET /api/sessions``, ``GET /api/sessions/{session}``: session summaries;
- ``GET /api/sessions/{session}/objects``: every object with its state (motors: position,
  state, limits, unit); ``?read=1`` reads positions from the hardware first;
- ``POST /api/sessions/{session}/commands`` ``{"source": "ascan(m1, 0, 1, 10, 0.1)",
  "wait": true, "timeout": 60}``: run Python in the session, as typed at a console (its output
  is shown in the session's consoles); returns the command (id, state, result as text,
  error) when it ends, or at once with ``"wait": false``;
- ``GET /api/sessions/{session}/commands/{id}?wait=SECONDS``: a command's state;
- ``POST /api/sessions/{session}/commands/{id}/cancel``: Ctrl-C for that command;
- ``GET /api/locks``: the device locks held (``lslock()``);
- ``WS /api/events?session=NAME``: JSON events: ``scan`` (start/end, with the scan id, key,
  number and the data Redis URL), ``command`` (started/ended), ``positions`` (motor
  positions and states when they change, at most every ``POSITION_PERIOD``).

Clients: :mod:`blissng.client`. Commands run in the name of holder console ``api`` (or
``api:<client>`` with the ``X-Blissng-Client`` header), which device-lock messages name.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import logging
import math
import socket
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import anyio
import anyio.abc
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from blissng.devices.protocols import Movable
from blissng.locks import Holder, holding_as
from blissng.scans import hooks
from blissng.web.security import Refused, WebSecurity

log = logging.getLogger("blissng.api")

POSITION_PERIOD = 0.1  # seconds between two position events
MAX_SOURCE = 100_000  # characters of a command


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _security(conn: HTTPConnection) -> WebSecurity:
    security: WebSecurity = conn.app.state.security
    return security


def _check(request: Request) -> None:
    try:
        _security(request).check_http(request.query_params, request.headers, request.cookies)
        if request.method != "GET":  # a state change: a browser page of another origin may not
            _security(request).check_origin(
                request.headers.get("origin"), request.headers.get("host")
            )
    except Refused as exc:
        raise ApiError(exc.status, exc.reason) from None


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def object_state(name: str, obj: Any) -> dict[str, Any]:
    """What a GUI shows of an object (no I/O)."""
    state: dict[str, Any] = {"name": name, "class": type(obj).__name__}
    if isinstance(obj, Movable):
        state["kind"] = "motor"
        state["position"] = obj.position
        value = getattr(obj, "state", None)
        state["state"] = value.value if isinstance(value, enum.Enum) else value
        for attr in ("unit", "limits"):
            try:
                state[attr] = getattr(obj, attr, None)
            except Exception as exc:  # a property that needs the hardware
                state[attr] = f"{type(exc).__name__}: {exc}"
    elif hasattr(obj, "counters"):
        state["kind"] = "counters"
        state["counters"] = [getattr(c, "name", str(c)) for c in obj.counters]
    else:
        state["kind"] = "object"
    return _jsonable(state)


def command_state(cmd: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "id": cmd.id,
        "text": cmd.text,
        "state": cmd.state,
        "start_time": cmd.start_time,
        "end_time": cmd.end_time,
        "result": None,
        "error": None,
    }
    if cmd.state == "done" and cmd.result is not None:
        state["result"] = _result_text(cmd.result)
        scan = cmd.result
        if getattr(scan, "scan_id", None) is not None:
            state["scan"] = scan_summary(scan)
    if cmd.error is not None:
        state["error"] = f"{type(cmd.error).__name__}: {cmd.error}"
    return state


def _result_text(result: Any) -> str:
    try:
        return repr(result)
    except Exception as exc:
        return f"<unrepresentable {type(result).__name__}: {exc}>"


def scan_summary(scan: Any) -> dict[str, Any]:
    return _jsonable(
        {
            "scan_id": getattr(scan, "scan_id", None),
            "key": getattr(scan, "key", None),
            "number": getattr(scan, "number", None),
            "title": getattr(scan, "title", None),
            "state": getattr(scan, "state", None),
        }
    )


class Api:
    """The endpoints, bound to one :class:`~blissng.session.server.Server`."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.commands: dict[tuple[str, int], Any] = {}

    # -- helpers ---------------------------------------------------------------------------

    def _session(self, name: str) -> Any:
        try:
            return self.server.session(name)
        except KeyError as exc:
            raise ApiError(404, str(exc.args[0])) from None

    def _command(self, session: str, ident: str) -> Any:
        try:
            return self.commands[(session, int(ident))]
        except (KeyError, ValueError):
            raise ApiError(
                404, f"session {session!r} has no command {ident!r} run through the API"
            ) from None

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, 'the body must be JSON, e.g. {"source": "wa()"}') from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    # -- endpoints -------------------------------------------------------------------------

    async def get_server(self, request: Request) -> Response:
        return JSONResponse(_jsonable(self.server.summary()))

    async def list_sessions(self, request: Request) -> Response:
        sessions = [s.summary() for s in self.server.sessions.values()]
        return JSONResponse({"sessions": _jsonable(sessions)})

    async def get_session(self, request: Request) -> Response:
        session = self._session(request.path_params["session"])
        return JSONResponse(_jsonable(session.summary()))

    async def list_objects(self, request: Request) -> Response:
        session = self._session(request.path_params["session"])
        if request.query_params.get("read") in ("1", "true", "yes"):
            await _read_positions(session.objects)
        objects = [object_state(name, obj) for name, obj in sorted(session.objects.items())]
        return JSONResponse({"session": session.name, "objects": objects})

    async def get_object(self, request: Request) -> Response:
        session = self._session(request.path_params["session"])
        name = request.path_params["name"]
        if name not in session.objects:
            raise ApiError(404, f"session {session.name!r} has no object {name!r}")
        obj = session.objects[name]
        if request.query_params.get("read") in ("1", "true", "yes"):
            await _read_positions({name: obj})
        return JSONResponse(object_state(name, obj))

    async def run_command(self, request: Request) -> Response:
        session = self._session(request.path_params["session"])
        body = await self._body(request)
        source = body.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ApiError(400, 'give the Python to run as {"source": "..."}')
        if len(source) > MAX_SOURCE:
            raise ApiError(413, f"the command is longer than {MAX_SOURCE} characters")
        wait = body.get("wait", True)
        timeout = body.get("timeout")
        client = request.headers.get("x-blissng-client", "")[:40]
        holder = Holder(session.name, f"api:{client}" if client else "api", source[:80])
        session.output.write(f"[{holder.console}] {source}\n")
        try:
            with holding_as(holder):
                cmd = session.submit_source(source)
        except SyntaxError as exc:
            raise ApiError(400, f"SyntaxError: {exc.msg} (line {exc.lineno})") from None
        self.commands[(session.name, cmd.id)] = cmd
        self._forget_old()
        self.server.events.publish(
            {"type": "command", "phase": "start", "session": session.name, **command_state(cmd)}
        )
        self.server.tasks.start_soon(self._announce_end, session.name, cmd)
        if wait:
            await _wait(cmd, timeout)
        return JSONResponse(command_state(cmd), status_code=200 if cmd.done else 202)

    async def _announce_end(self, session: str, cmd: Any) -> None:
        await cmd._done.wait()
        self.server.events.publish(
            {"type": "command", "phase": "end", "session": session, **command_state(cmd)}
        )

    async def get_command(self, request: Request) -> Response:
        cmd = self._command(request.path_params["session"], request.path_params["id"])
        wait = request.query_params.get("wait")
        if wait:
            try:
                await _wait(cmd, float(wait))
            except ValueError:
                raise ApiError(400, "wait= is a number of seconds") from None
        return JSONResponse(command_state(cmd))

    async def cancel_command(self, request: Request) -> Response:
        cmd = self._command(request.path_params["session"], request.path_params["id"])
        cmd.cancel()
        await _wait(cmd, 10.0)
        return JSONResponse(command_state(cmd))

    async def list_locks(self, request: Request) -> Response:
        infos = await self.server.locks.list_locks()
        return JSONResponse(
            {
                "locks": [
                    {
                        "device": i.device,
                        "holder": i.holder.to_dict(),
                        "description": i.holder.describe(),
                        "since": i.since,
                        "where": i.where,
                        "expires_in": i.expires_in,
                    }
                    for i in infos
                ]
            }
        )

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_schema())

    def _forget_old(self, keep: int = 1000) -> None:
        if len(self.commands) > keep:
            for key in [k for k, c in self.commands.items() if c.done][: len(self.commands) - keep]:
                del self.commands[key]

    # -- events ----------------------------------------------------------------------------

    async def events(self, websocket: WebSocket) -> None:
        try:
            _security(websocket).check_websocket(
                websocket.query_params, websocket.headers, websocket.cookies
            )
        except Refused as exc:
            await websocket.close(code=1008, reason=exc.reason[:120])
            return
        wanted = websocket.query_params.get("session")
        if wanted is not None and wanted not in self.server.sessions:
            await websocket.close(code=1008, reason=f"unknown session {wanted!r}"[:120])
            return
        await websocket.accept()
        sessions = [self.server.sessions[wanted]] if wanted else list(self.server.sessions.values())
        with self.server.events.subscribe() as subscriber:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_positions, sessions)
                    tg.start_soon(_drain, websocket, tg.cancel_scope)
                    await websocket.send_json(
                        {"type": "hello", "sessions": [s.name for s in sessions]}
                    )
                    async for event in subscriber.receive:
                        if wanted and event.get("session") not in (None, wanted):
                            continue
                        await websocket.send_json(event)
            except (WebSocketDisconnect, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

    async def _watch_positions(self, sessions: list[Any]) -> None:
        last: dict[str, Any] = {}
        while True:
            for session in sessions:
                now = {m.name: object_state(m.name, m) for m in session.motors}
                changed = {n: s for n, s in now.items() if last.get(f"{session.name}/{n}") != s}
                if changed:
                    for name, state in changed.items():
                        last[f"{session.name}/{name}"] = state
                    self.server.events.publish(
                        {"type": "positions", "session": session.name, "motors": changed}
                    )
            await anyio.sleep(POSITION_PERIOD)


async def _drain(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    """Read (and ignore) what the client sends; its going away ends the subscription."""
    try:
        while True:
            await websocket.receive_text()
    except (WebSocketDisconnect, RuntimeError, KeyError):
        scope.cancel()


async def _wait(cmd: Any, timeout: Any) -> None:
    limit = float(timeout) if isinstance(timeout, int | float) else math.inf
    with anyio.move_on_after(limit):
        await cmd._done.wait()


async def _read_positions(objects: Mapping[str, Any]) -> None:
    async with anyio.create_task_group() as tg:
        for obj in objects.values():
            if isinstance(obj, Movable):
                tg.start_soon(_read_one, obj)


async def _read_one(motor: Any) -> None:
    with anyio.move_on_after(2.0):
        try:
            await motor.read_position()
        except Exception:  # the state shows the last known position
            pass


def _scan_hooks(server: Any) -> list[Any]:
    """Scan start/end events from the scans layer's hooks into the server's events."""
    data_url = server.redis.data if server.redis is not None else None

    async def publish(event: hooks.ScanEvent) -> None:
        if event.session not in server.sessions:
            return
        server.events.publish(
            {
                "type": "scan",
                "phase": event.phase,
                "session": event.session,
                "scan_id": event.scan_id,
                "key": event.key,
                "number": event.number,
                "name": event.name,
                "state": event.state,
                "error": event.error,
                "data_url": data_url,
            }
        )

    return [hooks.add_scan_start_hook(publish), hooks.add_scan_end_hook(publish)]


def _wrap(endpoint: Any) -> Any:
    async def handler(request: Request) -> Response:
        try:
            _check(request)
            response: Response = await endpoint(request)
            return response
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)

    handler.__name__ = endpoint.__name__
    handler.__doc__ = endpoint.__doc__
    return handler


def api_routes(server: Any) -> list[BaseRoute]:
    """The API's routes for ``server`` (give them to ``create_app(routes=...)``). Registers
    scan hooks that live as long as the process (they ignore other servers' sessions)."""
    api = Api(server)
    server.api = api
    server._api_unhooks = _scan_hooks(server)

    async def openapi(request: Request) -> Response:  # public: no token needed to read it
        return JSONResponse(openapi_schema())

    return [
        Route("/api/openapi.json", openapi),
        Route("/api/server", _wrap(api.get_server)),
        Route("/api/sessions", _wrap(api.list_sessions)),
        Route("/api/sessions/{session}", _wrap(api.get_session)),
        Route("/api/sessions/{session}/objects", _wrap(api.list_objects)),
        Route("/api/sessions/{session}/objects/{name}", _wrap(api.get_object)),
        Route("/api/sessions/{session}/commands", _wrap(api.run_command), methods=["POST"]),
        Route("/api/sessions/{session}/commands/{id}", _wrap(api.get_command)),
        Route(
            "/api/sessions/{session}/commands/{id}/cancel",
            _wrap(api.cancel_command),
            methods=["POST"],
        ),
        Route("/api/locks", _wrap(api.list_locks)),
        WebSocketRoute("/api/events", api.events),
    ]


@dataclasses.dataclass
class WebOptions:
    """Where the server's web app listens (the fields of ``blissng serve``'s web options)."""

    host: str = "127.0.0.1"
    port: int = 0
    allow_origin: list[str] = dataclasses.field(default_factory=list)
    allow_host: list[str] = dataclasses.field(default_factory=list)


def web_runner(options: Any) -> Callable[..., Coroutine[Any, Any, None]]:
    """What a ``blissng.session.Server`` runs as its web app: the web shell's consoles and
    plots for the server's sessions, this API on the same Starlette app, uvicorn on
    ``options`` (host, port, allow_origin, allow_host: :class:`WebOptions` or the CLI's
    arguments), and the connection file ``<state_dir>/web.json``. Reports the URL with its
    token."""

    async def run(server: Any, *, task_status: anyio.abc.TaskStatus[str]) -> None:
        from blissng.shell.consoles import ShellHub

        from .serve import DEFAULT_PORT, run_web_shell

        args = options
        if getattr(options, "port", 0) == DEFAULT_PORT and _port_busy(options.host, DEFAULT_PORT):
            # Another server (or a test) has the default port: any free one, and say which
            # (clients read the connection file, not the port).
            log.warning("port %d is busy: the web shell takes a free port", DEFAULT_PORT)
            args = copy.copy(options)
            args.port = 0

        routes = api_routes(server)
        server.hub = ShellHub(log_dir=server.state_dir / "logs")
        try:
            await run_web_shell(
                list(server.sessions.values()),
                hub=server.hub,
                args=args,
                state_dir=server.state_dir,
                data_url=server.redis.data if server.redis is not None else None,
                routes=routes,
                task_status=task_status,
            )
        finally:
            for unhook in server._api_unhooks:
                unhook()

    return run


def _port_busy(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def openapi_schema() -> dict[str, Any]:
    """A hand-written OpenAPI 3.1 description of the API."""
    token: list[dict[str, list[str]]] = [{"token": []}, {"bearer": []}]
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    session = {"name": "session", "in": "path", "required": True, "schema": {"type": "string"}}
    ident = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}

    def ok(schema: str, text: str = "OK") -> dict[str, Any]:
        return {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "blissng server API",
            "version": "1",
            "description": "Sessions, objects, commands and events of a running blissng server. "
            "Authenticate with ?token=, a Bearer header or the web shell's cookie. Events: "
            "websocket /api/events?session=NAME (JSON messages of type hello, scan, command, "
            "positions).",
        },
        "security": token,
        "paths": {
            "/api/server": {
                "get": {
                    "summary": "the server: sessions, background tasks, writer, Redis URLs",
                    "responses": {"200": ok("Server"), "403": error},
                }
            },
            "/api/sessions": {
                "get": {
                    "summary": "every session",
                    "responses": {"200": ok("Sessions"), "403": error},
                }
            },
            "/api/sessions/{session}": {
                "get": {
                    "summary": "one session",
                    "parameters": [session],
                    "responses": {"200": ok("Session"), "404": error},
                }
            },
            "/api/sessions/{session}/objects": {
                "get": {
                    "summary": "the session's objects and their state",
                    "parameters": [
                        session,
                        {
                            "name": "read",
                            "in": "query",
                            "schema": {"type": "boolean"},
                            "description": "read motor positions from the hardware first",
                        },
                    ],
                    "responses": {"200": ok("Objects"), "404": error},
                }
            },
            "/api/sessions/{session}/objects/{name}": {
                "get": {
                    "summary": "one object's state",
                    "parameters": [
                        session,
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {"200": ok("Object"), "404": error},
                }
            },
            "/api/sessions/{session}/commands": {
                "post": {
                    "summary": "run Python in the session (as typed at a console)",
                    "parameters": [session],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/CommandRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": ok("Command", "ended"),
                        "202": ok("Command", "still running"),
                        "400": error,
                        "404": error,
                    },
                }
            },
            "/api/sessions/{session}/commands/{id}": {
                "get": {
                    "summary": "a command's state",
                    "parameters": [
                        session,
                        ident,
                        {
                            "name": "wait",
                            "in": "query",
                            "schema": {"type": "number"},
                            "description": "wait up to this many seconds for its end",
                        },
                    ],
                    "responses": {"200": ok("Command"), "404": error},
                }
            },
            "/api/sessions/{session}/commands/{id}/cancel": {
                "post": {
                    "summary": "cancel a command (Ctrl-C: its scan aborts)",
                    "parameters": [session, ident],
                    "responses": {"200": ok("Command"), "404": error},
                }
            },
            "/api/locks": {
                "get": {"summary": "device locks held (lslock)", "responses": {"200": ok("Locks")}}
            },
        },
        "components": {
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "query", "name": "token"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
                "CommandRequest": {
                    "type": "object",
                    "required": ["source"],
                    "properties": {
                        "source": {"type": "string"},
                        "wait": {"type": "boolean", "default": True},
                        "timeout": {"type": "number"},
                    },
                },
                "Command": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "text": {"type": "string"},
                        "state": {"enum": ["pending", "running", "done", "failed", "cancelled"]},
                        "result": {"type": ["string", "null"]},
                        "error": {"type": ["string", "null"]},
                        "scan": {"$ref": "#/components/schemas/Scan"},
                        "start_time": {"type": "number"},
                        "end_time": {"type": ["number", "null"]},
                    },
                },
                "Scan": {
                    "type": "object",
                    "properties": {
                        "scan_id": {"type": "string"},
                        "key": {"type": "string"},
                        "number": {"type": "integer"},
                        "title": {"type": "string"},
                        "state": {"type": "string"},
                    },
                },
                "Object": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "class": {"type": "string"},
                        "kind": {"enum": ["motor", "counters", "object"]},
                        "position": {"type": ["number", "null"]},
                        "state": {"type": ["string", "null"]},
                    },
                },
                "Objects": {
                    "type": "object",
                    "properties": {
                        "session": {"type": "string"},
                        "objects": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Object"},
                        },
                    },
                },
                "Session": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "objects": {"type": "array", "items": {"type": "string"}},
                        "motors": {"type": "array", "items": {"type": "string"}},
                        "last_scan": {"type": ["object", "null"]},
                    },
                },
                "Sessions": {
                    "type": "object",
                    "properties": {
                        "sessions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Session"},
                        }
                    },
                },
                "Server": {
                    "type": "object",
                    "properties": {
                        "sessions": {"type": "array"},
                        "background": {"type": "object"},
                        "writer": {"type": ["object", "null"]},
                        "redis": {
                            "type": ["object", "null"],
                            "properties": {
                                "settings": {"type": "string"},
                                "data": {"type": "string"},
                            },
                        },
                    },
                },
                "Locks": {
                    "type": "object",
                    "properties": {"locks": {"type": "array", "items": {"type": "object"}}},
                },
            },
        },
    }


__all__ = ["Api", "WebOptions", "api_routes", "object_state", "openapi_schema", "web_runner"]
