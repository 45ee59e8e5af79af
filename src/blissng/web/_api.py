"""The server's API for GUIs and scripts: HTTP + JSON, and a websocket of events.

Mounted on the web shell's Starlette app (same port, same token, same Host and Origin
checks: :mod:`blissng.web._security`). Routes (all under ``/api``; OpenAPI at
``/api/openapi.json``):

- ``GET /api/server``: sessions, background tasks, writer, the data Redis URL (readers can
  follow scans there with ``blissng.data.DataStore``);
- ``GET /api/sessions``, ``GET /api/sessions/{session}``: session summaries;
- ``GET /api/sessions/{session}/objects``: every object with its state (motors: position,
  state, limits, unit); ``?read=1`` reads positions from the hardware first;
- ``POST /api/sessions/{session}/commands`` ``{"source": "ascan(m1, 0, 1, 10, 0.1)",
  "wait": true, "timeout": 60}``: run Python in the session, as typed at a console (the
  session's one command runner: same compile rule, output, Ctrl-C and errors; its output
  is shown in the session's consoles); returns the command (id, state, result as text,
  error, output) when it ends, or at once with ``"wait": false``;
- ``GET /api/sessions/{session}/commands``: the running and recent commands of every
  console and API client of the session;
- ``GET /api/sessions/{session}/commands/{id}?wait=SECONDS``: a command's state;
- ``POST /api/sessions/{session}/commands/{id}/cancel``: Ctrl-C for that command;
- ``GET /api/locks``: the device locks held (``lslock()``);
- ``WS /api/events?session=NAME``: JSON events: ``scan`` (start/end, with the scan id, key,
  number and the data Redis URL), ``command`` (started/ended), ``positions`` (motor
  positions and states when they change, at most every ``POSITION_PERIOD``).

Clients: :mod:`blissng.client`. Commands run in the name of holder console ``api`` (or
``api:<client>`` with the ``X-Blissng-Client`` header), which device-lock messages name.

The endpoints and the events websocket share one :class:`Api` and its limits; what they offer
is declared in :mod:`blissng.web._endpoints` (:data:`ENDPOINTS`, from which the routes here and
the OpenAPI description are made, with the models of :mod:`blissng.web._schemas`). Served by
:func:`blissng.web.web_runner`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from blissng.errors import BlissngError
from blissng.scans import ScanEvent
from blissng.session import describe_object, error_text, read_positions

from ._endpoints import ENDPOINTS, openapi_schema
from ._limits import (
    CLOSE_TOO_MANY,
    MAX_BODY,
    BodyCut,
    BodyTooLarge,
    Slots,
    events_limit,
    read_body,
    refusals,
)
from ._security import Refused, WebSecurity, terminal_safe

if TYPE_CHECKING:
    from blissng.session import Server

log = logging.getLogger("blissng.api")

POSITION_PERIOD = 0.1  # seconds between two position events
MAX_SOURCE = 100_000  # characters of a command


class ApiError(BlissngError):
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
    """What a GUI shows of an object (no I/O), as JSON."""
    return _jsonable(describe_object(name, obj))


def command_state(cmd: Any, *, output: bool = True) -> dict[str, Any]:
    """A command as JSON: who typed it (``origin``: a console id, ``api:<client>``,
    ``session``), its state, its result as text, its error on one line, what it printed."""
    state: dict[str, Any] = {
        "id": cmd.id,
        "text": cmd.text,
        "origin": cmd.origin,
        "state": cmd.state,
        "start_time": cmd.start_time,
        "end_time": cmd.end_time,
        "result": None,
        "error": None,
    }
    if output:
        state["output"] = cmd.output
    if cmd.state == "done" and cmd.result is not None:
        state["result"] = _result_text(cmd.result)
        scan = cmd.result
        if getattr(scan, "scan_id", None) is not None:
            state["scan"] = scan_summary(scan)
    if cmd.error is not None:
        state["error"] = error_text(cmd.error)
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
    """The endpoints, bound to one :class:`~blissng.session.Server`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.unhooks: list[Callable[[], None]] = []
        """Removers of the scan hooks that publish scan events (called when serving ends)."""
        self.event_slots = Slots("events", events_limit())
        self._watchers = 0  # events websockets open: the position watcher runs while > 0
        self._watch_scope: anyio.CancelScope | None = None

    # -- helpers ---------------------------------------------------------------------------

    def _session(self, name: str) -> Any:
        try:
            return self.server.session(name)
        except KeyError as exc:
            raise ApiError(404, str(exc.args[0])) from None

    def _command(self, session: str, ident: str) -> Any:
        runner = self._session(session).runner
        try:
            return runner.get(int(ident))
        except (KeyError, ValueError):
            raise ApiError(
                404,
                f"session {session!r} has no command {ident!r} (only the running and the last "
                "100 are kept)",
            ) from None

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        try:  # read up to MAX_BODY: a 50 MB body is refused before it is read
            raw = await read_body(request, MAX_BODY)
        except BodyTooLarge as exc:
            raise ApiError(413, f"{exc}: send less") from None
        except BodyCut as exc:  # an answer nobody reads; no command runs
            raise ApiError(400, str(exc)) from None
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
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
            await read_positions(session.objects)
        objects = [object_state(name, obj) for name, obj in sorted(session.objects.items())]
        return JSONResponse({"session": session.name, "objects": objects})

    async def get_object(self, request: Request) -> Response:
        session = self._session(request.path_params["session"])
        name = request.path_params["name"]
        if name not in session.objects:
            raise ApiError(404, f"session {session.name!r} has no object {name!r}")
        obj = session.objects[name]
        if request.query_params.get("read") in ("1", "true", "yes"):
            await read_positions({name: obj})
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
        if not isinstance(wait, bool):
            raise ApiError(400, f'"wait" must be true or false, not {wait!r}')
        timeout = _seconds(body.get("timeout"), '"timeout"')
        client = terminal_safe(request.headers.get("x-blissng-client", ""), one_line=True)[:40]
        origin = f"api:{client}" if client else "api"  # device locks name it
        session.output.write(f"[{origin}] {terminal_safe(source)}\n")
        try:
            cmd = session.submit_source(source, origin=origin)
        except SyntaxError as exc:
            session.output.write(f"!!! === {error_text(exc)} === !!!\n")
            raise ApiError(400, error_text(exc)) from None
        self.server.events.publish(
            {"type": "command", "phase": "start", "session": session.name, **command_state(cmd)}
        )
        self.server.tasks.start_soon(self._announce_end, session.name, cmd)
        if wait:
            await _wait(cmd, timeout)
        return JSONResponse(command_state(cmd), status_code=200 if cmd.done else 202)

    async def _announce_end(self, session: str, cmd: Any) -> None:
        await cmd.wait_done()
        self.server.events.publish(
            {"type": "command", "phase": "end", "session": session, **command_state(cmd)}
        )

    async def list_commands(self, request: Request) -> Response:
        session = self._session(request.path_params["session"])
        commands = [command_state(c, output=False) for c in session.commands]
        return JSONResponse({"session": session.name, "commands": commands})

    async def get_command(self, request: Request) -> Response:
        cmd = self._command(request.path_params["session"], request.path_params["id"])
        wait = request.query_params.get("wait")
        if wait:
            try:
                seconds = float(wait)
            except ValueError:
                seconds = math.nan
            await _wait(cmd, _seconds(seconds, "wait="))
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
        with self.event_slots.held() as refusal:
            await websocket.accept()
            if refusal is not None:
                await websocket.close(code=CLOSE_TOO_MANY, reason=refusal[:120])
                return
            await self._send_events(websocket, wanted)

    async def _send_events(self, websocket: WebSocket, wanted: str | None) -> None:
        sessions = [self.server.sessions[wanted]] if wanted else list(self.server.sessions.values())
        with self.server.events.subscribe() as subscriber, self._positions_watched():
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_drain, websocket, tg.cancel_scope)
                    await websocket.send_json(
                        {"type": "hello", "sessions": [s.name for s in sessions]}
                    )
                    for session in sessions:  # where the motors are now; then changes
                        motors = {m.name: object_state(m.name, m) for m in session.motors}
                        await websocket.send_json(
                            {"type": "positions", "session": session.name, "motors": motors}
                        )
                    async for event in subscriber.receive:
                        if wanted and event.get("session") not in (None, wanted):
                            continue
                        await websocket.send_json(event)
            except* (WebSocketDisconnect, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the client went away, even mid-send: a task group raises it as a group

    @contextlib.contextmanager
    def _positions_watched(self) -> Iterator[None]:
        """One watcher of the motors for all the events websockets (it publishes each change
        once, into the events every subscriber gets), running while any is open."""
        self._watchers += 1
        if self._watchers == 1:
            self._watch_scope = anyio.CancelScope()
            self.server.tasks.start_soon(self._watch_positions, self._watch_scope)
        try:
            yield
        finally:
            self._watchers -= 1
            if self._watchers == 0 and self._watch_scope is not None:
                self._watch_scope.cancel()
                self._watch_scope = None

    async def _watch_positions(self, scope: anyio.CancelScope) -> None:
        last: dict[str, Any] = {  # each client got these in its snapshot: changes only
            f"{session.name}/{m.name}": object_state(m.name, m)
            for session in list(self.server.sessions.values())
            for m in session.motors
        }
        with scope:
            while True:
                for session in list(self.server.sessions.values()):
                    try:
                        now = {m.name: object_state(m.name, m) for m in session.motors}
                    except Exception as exc:  # a task of the server: it must not end it
                        refusals.warning("positions", f"motor positions not read: {exc!r}")
                        continue
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


def _seconds(value: Any, what: str) -> float | None:
    """A duration from a request: None, or a finite number >= 0 (JSON NaN and Infinity,
    which Python's parser accepts, are refused with the rest)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"{what} must be a number of seconds or null, not {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ApiError(400, f"{what} must be a finite number of seconds >= 0, not {value!r}")
    return float(value)


async def _wait(cmd: Any, timeout: float | None) -> None:
    with anyio.move_on_after(math.inf if timeout is None else timeout):
        await cmd.wait_done()


def _scan_hooks(server: Server) -> list[Callable[[], None]]:
    """Scan start/end events from the server's scan hooks into the server's events."""
    data_url = server.redis.data if server.redis is not None else None

    async def publish(event: ScanEvent) -> None:
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

    scan_hooks = server.scan_hooks
    return [scan_hooks.add_scan_start_hook(publish), scan_hooks.add_scan_end_hook(publish)]


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


def api_routes(api: Api) -> list[BaseRoute]:
    """The routes of ``api`` (give them to ``create_app(routes=...)``). Registers with its
    server's scan hooks; whoever serves them calls ``api.unhooks`` when serving ends."""
    api.unhooks = _scan_hooks(api.server)

    async def openapi(request: Request) -> Response:  # public: no token needed to read it
        return JSONResponse(openapi_schema())

    return [
        Route("/api/openapi.json", openapi),
        *(Route(e.path, _wrap(getattr(api, e.handler)), methods=[e.method]) for e in ENDPOINTS),
        WebSocketRoute("/api/events", api.events),
    ]


__all__ = ["Api", "api_routes", "object_state", "openapi_schema"]
