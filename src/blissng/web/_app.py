"""The Starlette app: the browser client, console websockets, live-plot websockets.

Composable, because the server adds its JSON API (``blissng.web._api``) to the same app::

    hub = ShellHub(log_dir=...)
    security = WebSecurity.create(allowed_origins=[...])
    app = create_app(hub, security=security, routes=api_routes(Api(server)), data_url=urls.data)

or, to build an app of one's own, ``shell_routes(hub, security, ...)`` gives the routes and
``security_middleware``-free checks are inside each endpoint (websockets) or
:func:`require_token` (HTTP). ``create_app`` enters the hub in the app's lifespan when nobody
else runs it, and adds ``sessions`` given up front.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from importlib import resources
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from blissng.shell import ShellHub, ShellSession

from ._console_socket import ConnectionLimit, close_websocket, serve_console
from ._limits import CLOSE_TOO_MANY, Slots, plot_limit
from ._security import COOKIE_NAME, Refused, WebSecurity

VENDOR_FILES = ("xterm.js", "xterm.css", "addon-fit.js", "uPlot.iife.min.js", "uPlot.min.css")


def static_dir() -> Path:
    """The client's files inside the installed package (``make webshell`` copies the npm
    packages into ``static/vendor``)."""
    return Path(str(resources.files("blissng.web") / "static"))


def missing_vendor_files(directory: Path | None = None) -> list[str]:
    vendor = (directory or static_dir()) / "vendor"
    return [name for name in VENDOR_FILES if not (vendor / name).is_file()]


def _refusal_page(reason: str) -> HTMLResponse:
    body = (
        "<!doctype html><title>blissng: access refused</title>"
        f"<h1>Access refused</h1><p>{html.escape(reason)}</p>"
    )
    return HTMLResponse(body, status_code=403)


def require_token(security: WebSecurity, request: Request) -> Response | None:
    """None when the HTTP request may go on; else the refusal to send."""
    try:
        security.check_http(request.query_params, request.headers, request.cookies)
    except Refused as exc:
        return (
            _refusal_page(exc.reason)
            if exc.status == 403
            else PlainTextResponse(exc.reason, status_code=exc.status)
        )
    return None


CONTROL = "control"
VIEW = "view"


def _admission(security: WebSecurity, websocket: WebSocket) -> str:
    """What this websocket may do: CONTROL with the token; VIEW with a view key for the
    session and ``?console=`` it names; Refused otherwise (Host and Origin checked first)."""
    try:
        security.check_websocket(websocket.query_params, websocket.headers, websocket.cookies)
        return CONTROL
    except Refused:
        query = websocket.query_params
        session = websocket.path_params.get("session", "")
        if not security.view_key_ok(query.get("view"), session, query.get("console")):
            raise
        return VIEW


async def _check_websocket(security: WebSecurity, websocket: WebSocket) -> str | None:
    """The admission (see :func:`_admission`), or None once the handshake was refused
    (HTTP 403 with the reason)."""
    try:
        return _admission(security, websocket)
    except Refused as exc:
        response = PlainTextResponse(exc.reason, status_code=exc.status)
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(code=1008, reason=exc.reason[:120])
        return None


def shell_routes(
    hub: ShellHub,
    security: WebSecurity,
    *,
    max_connections: int = 64,
    max_plots: int | None = None,
    data_url: str | None = None,
    static: Path | None = None,
) -> list[BaseRoute]:
    """The web shell's routes: page, sessions list, console and plot websockets, static.

    ``max_connections`` console websockets and ``max_plots`` plot websockets (default: what
    the process's descriptor limit allows, :func:`blissng.web._limits.plot_limit`) at once."""
    limit = ConnectionLimit(max_connections)
    plots = Slots("plot", max_plots if max_plots is not None else plot_limit())
    static = static or static_dir()

    def page() -> Response:
        missing = missing_vendor_files(static)
        if missing:
            return PlainTextResponse(
                f"the browser client's files are missing ({', '.join(missing)}): "
                "run `make webshell` (npm install) in the blissng source tree",
                status_code=500,
            )
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    async def index(request: Request) -> Response:
        refusal = require_token(security, request)
        if refusal is not None:
            return refusal
        token = request.query_params.get("token")
        if token:  # exchange the token for a cookie, and drop it from the address bar
            response: Response = RedirectResponse(url=request.url.path, status_code=303)
            response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="strict")
            return response
        return page()

    async def view_page(request: Request) -> Response:
        """A watch link: ``/view/SESSION/CONSOLE?key=KEY`` (no token: the key is enough)."""
        try:
            security.check_host(request.headers.get("host"))
        except Refused as exc:
            return PlainTextResponse(exc.reason, status_code=exc.status)
        session = request.path_params["session"]
        console = request.path_params["console"]
        if not security.view_key_ok(request.query_params.get("key"), session, console):
            return _refusal_page(
                "this watch link is not valid (wrong key, or for another server): ask for a "
                'new one (the "watch link" button of the console to watch)'
            )
        return page()

    async def view_link(request: Request) -> Response:
        """``/shell/view-link?session=S&console=C`` (token required): the watch link of a
        console, which carries its own read-only capability."""
        refusal = require_token(security, request)
        if refusal is not None:
            return refusal
        session = request.query_params.get("session", "")
        console = request.query_params.get("console", "")
        if session not in hub.sessions or console not in hub.get(session).consoles:
            return JSONResponse(
                {"error": f"session {session!r} has no console {console!r}"}, status_code=404
            )
        key = security.view_key(session, console)
        path = f"/view/{quote(session)}/{quote(console)}?key={quote(key)}"
        return JSONResponse({"path": path, "key": key})

    async def sessions(request: Request) -> Response:
        refusal = require_token(security, request)
        if refusal is not None:
            return refusal
        return JSONResponse(
            {
                "sessions": [
                    {
                        "name": name,
                        "consoles": [c.status() for c in consoles.consoles.values()],
                    }
                    for name, consoles in sorted(hub.sessions.items())
                ]
            }
        )

    async def console_ws(websocket: WebSocket) -> None:
        admission = await _check_websocket(security, websocket)
        if admission is not None:
            await serve_console(
                websocket,
                hub,
                limit,
                websocket.path_params["session"],
                view_only=admission == VIEW,
            )

    async def plot_ws(websocket: WebSocket) -> None:
        if await _check_websocket(security, websocket) is None:
            return
        from ._plots import serve_plot

        with plots.held() as refusal:
            if refusal is not None:
                await websocket.accept()
                await close_websocket(websocket, CLOSE_TOO_MANY, refusal)
                return
            await serve_plot(websocket, hub, websocket.path_params["session"], data_url)

    return [
        Route("/", index),
        Route("/view/{session}/{console}", view_page),
        Route("/shell/sessions", sessions),
        Route("/shell/view-link", view_link),
        WebSocketRoute("/ws/console/{session}", console_ws),
        WebSocketRoute("/ws/plot/{session}", plot_ws),
        Mount("/static", app=StaticFiles(directory=static), name="static"),
    ]


def create_app(
    hub: ShellHub,
    *,
    security: WebSecurity,
    sessions: Sequence[ShellSession] = (),
    routes: Sequence[BaseRoute] = (),
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]] | None = None,
    max_connections: int = 64,
    max_plots: int | None = None,
    data_url: str | None = None,
    static: Path | None = None,
) -> Starlette:
    """The web app. ``routes`` (the server's API) come before the shell's own.

    ``lifespan`` is entered after the hub runs and ``sessions`` were added; the hub is entered
    here only if nobody runs it yet (the server may own it in its own task group).
    """

    @contextlib.asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if not hub.running:
                await stack.enter_async_context(hub)
            for session in sessions:
                if getattr(session, "started", True) is False and hasattr(session, "__aenter__"):
                    # a Session nobody started yet: it lives as long as the app
                    await stack.enter_async_context(cast(Any, session))
                await hub.add_session(session)
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            yield

    app = Starlette(
        routes=[
            *routes,
            *shell_routes(
                hub,
                security,
                max_connections=max_connections,
                max_plots=max_plots,
                data_url=data_url,
                static=static,
            ),
        ],
        lifespan=app_lifespan,
    )
    app.state.hub = hub
    app.state.security = security
    return app


def describe(security: WebSecurity, host: str, port: int) -> str:
    """The line the server prints at start: the URL with its token."""
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "localhost"
    return f"http://{shown}:{port}/?token={security.token}"


__all__ = [
    "create_app",
    "describe",
    "missing_vendor_files",
    "require_token",
    "shell_routes",
    "static_dir",
]
