"""The client of a running server's API: :class:`Client` (async), :class:`SyncClient` and
:func:`connect` (blocking). Used through its face, :mod:`blissng.client`."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import httpx

from blissng.errors import BlissngError

T = TypeVar("T")


class ClientError(BlissngError, RuntimeError):
    """The server refused a request (its message says why)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status


class CommandFailed(BlissngError, RuntimeError):
    """A command ended failed or cancelled; ``command`` is its state from the server."""

    def __init__(self, command: dict[str, Any]) -> None:
        state = command.get("state")
        error = command.get("error") or state
        super().__init__(f"{command.get('text')!r} {state} in the server: {error}")
        self.command = command


def default_connection_file() -> Path:
    """``$BLISSNG_CONNECTION`` or the demo's state directory's ``web.json``."""
    configured = os.environ.get("BLISSNG_CONNECTION")
    if configured:
        return Path(configured)
    from blissng.redisdb import default_state_dir

    return default_state_dir("demo") / "web.json"


class Client:
    """An async client: ``async with Client(url, token) as client:``."""

    def __init__(
        self, url: str, token: str, *, name: str = "script", timeout: float = 30.0
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.name = name
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._data_url: str | None = None
        self._stores: list[Any] = []
        self._fallback: Any = None  # the files, read once a scan's data left Redis

    @classmethod
    def from_connection_file(cls, path: str | Path | None = None, **kwargs: Any) -> Client:
        """The server whose ``web.json`` is at ``path`` (:func:`default_connection_file`)."""
        file = Path(path) if path is not None else default_connection_file()
        try:
            data = json.loads(file.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no running blissng server found ({file} is missing): start one with "
                "`blissng serve`/`blissng demo`, or give Client(url, token)"
            ) from None
        return cls(data["url"], data["token"], **kwargs)

    def __repr__(self) -> str:
        return f"<blissng Client {self.url}>"

    async def __aenter__(self) -> Client:
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"authorization": f"Bearer {self.token}", "x-blissng-client": self.name},
            timeout=self.timeout,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for store in self._stores:
            with anyio.CancelScope(shield=True):
                await store.aclose()
        self._stores.clear()
        if self._fallback is not None:
            from blissng.data import unregister_fallback

            unregister_fallback(self._fallback)
            self._fallback = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ------------------------------------------------------------------ requests

    async def _request(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        if self._http is None:
            raise RuntimeError("the client is not open: use `async with Client(...) as client`")
        response = await self._http.request(
            method, path, timeout=timeout if timeout is not None else self.timeout, **kwargs
        )
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text}
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            raise ClientError(response.status_code, message or response.text)
        return body

    async def server(self) -> dict[str, Any]:
        """Sessions, background tasks, writer and Redis URLs of the server."""
        result: dict[str, Any] = await self._request("GET", "/api/server")
        return result

    async def sessions(self) -> list[dict[str, Any]]:
        result = await self._request("GET", "/api/sessions")
        return list(result["sessions"])

    async def objects(self, session: str, *, read: bool = False) -> dict[str, dict[str, Any]]:
        """Every object of ``session`` and its state, by name."""
        result = await self._request(
            "GET", f"/api/sessions/{session}/objects", params={"read": "1"} if read else {}
        )
        return {o["name"]: o for o in result["objects"]}

    async def positions(self, session: str, *, read: bool = True) -> dict[str, float | None]:
        """The motors' positions (``read=True``: read from the hardware first)."""
        objects = await self.objects(session, read=read)
        return {n: o.get("position") for n, o in objects.items() if o.get("kind") == "motor"}

    async def submit(self, session: str, source: str) -> dict[str, Any]:
        """Start ``source`` in ``session``; returns the command's state at once."""
        result: dict[str, Any] = await self._request(
            "POST", f"/api/sessions/{session}/commands", json={"source": source, "wait": False}
        )
        return result

    async def wait(
        self, session: str, command: dict[str, Any] | int, timeout: float | None = None
    ) -> dict[str, Any]:
        """Until the command ends (or ``timeout``); returns its state."""
        ident = command["id"] if isinstance(command, dict) else command
        deadline = anyio.current_time() + (timeout if timeout is not None else float("inf"))
        while True:
            chunk = min(10.0, max(0.0, deadline - anyio.current_time()))
            state: dict[str, Any] = await self._request(
                "GET",
                f"/api/sessions/{session}/commands/{ident}",
                params={"wait": str(chunk)},
                timeout=chunk + self.timeout,
            )
            if state["state"] not in ("pending", "running") or anyio.current_time() >= deadline:
                return state

    async def run(
        self, session: str, source: str, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Run ``source`` in ``session`` and wait for its end; raise :class:`CommandFailed` if
        it failed or was cancelled. Cancelling this call cancels the command."""
        command = await self.submit(session, source)
        try:
            state = await self.wait(session, command, timeout)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.cancel(session, command)
            raise
        if state["state"] in ("failed", "cancelled"):
            raise CommandFailed(state)
        return state

    async def cancel(self, session: str, command: dict[str, Any] | int) -> dict[str, Any]:
        ident = command["id"] if isinstance(command, dict) else command
        result: dict[str, Any] = await self._request(
            "POST", f"/api/sessions/{session}/commands/{ident}/cancel"
        )
        return result

    async def locks(self) -> list[dict[str, Any]]:
        return list((await self._request("GET", "/api/locks"))["locks"])

    # ------------------------------------------------------------------ events and data

    @contextlib.asynccontextmanager
    async def events(
        self, session: str | None = None
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """``async with client.events("demo") as events: async for event in events:`` scan,
        command and position events (see :class:`blissng.web.Api`)."""
        from websockets.asyncio.client import connect

        ws_url = "ws" + self.url.removeprefix("http") + "/api/events"
        if session:
            ws_url += f"?session={session}"
        async with connect(
            ws_url, additional_headers={"authorization": f"Bearer {self.token}"}
        ) as websocket:

            async def messages() -> AsyncIterator[dict[str, Any]]:
                async for raw in websocket:
                    yield json.loads(raw)

            yield messages()

    async def data_url(self) -> str:
        """The data Redis URL the server advertises (for ``blissng.data.DataStore``)."""
        if self._data_url is None:
            redis = (await self.server()).get("redis")
            if not redis:
                raise ClientError(404, "this server keeps its scans in memory (no data Redis)")
            self._data_url = str(redis["data"])
        return self._data_url

    async def scan(self, command_or_id: dict[str, Any] | str) -> Any:
        """The ``blissng.data`` view of a scan (from a command's state or a scan id), to read
        or follow its data directly from the data Redis, and from the scan's file once the
        data left Redis (expired, trimmed) when this machine sees the file."""
        from blissng.data import DataStore
        from blissng.writer import install as install_file_fallback

        scan_id: Any = command_or_id
        if isinstance(command_or_id, dict):
            scan = command_or_id.get("scan") or {}
            scan_id = scan.get("scan_id")
            if not scan_id:
                raise ClientError(404, f"command {command_or_id.get('text')!r} ran no scan")
        store = DataStore(await self.data_url())
        self._stores.append(store)
        if self._fallback is None:
            self._fallback = install_file_fallback(await self.data_url())
        return await store.get_scan(str(scan_id))


class SyncClient:
    """The blocking facade of :class:`Client` (a private event loop in a thread)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._portal_cm: Any = None
        self._portal: anyio.from_thread.BlockingPortal | None = None

    def __enter__(self) -> SyncClient:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._portal.call(self._client.__aenter__)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._portal is not None
        try:
            self._portal.call(self._client.__aexit__, None, None, None)
        finally:
            self._portal_cm.__exit__(*exc)
            self._portal = None

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._portal is None:
            raise RuntimeError("use `with connect(...) as client:`")
        return self._portal.call(lambda: func(*args, **kwargs))

    def server(self) -> dict[str, Any]:
        return self._call(self._client.server)

    def sessions(self) -> list[dict[str, Any]]:
        return self._call(self._client.sessions)

    def objects(self, session: str, *, read: bool = False) -> dict[str, dict[str, Any]]:
        return self._call(self._client.objects, session, read=read)

    def positions(self, session: str, *, read: bool = True) -> dict[str, float | None]:
        return self._call(self._client.positions, session, read=read)

    def run(self, session: str, source: str, *, timeout: float | None = None) -> dict[str, Any]:
        return self._call(self._client.run, session, source, timeout=timeout)

    def submit(self, session: str, source: str) -> dict[str, Any]:
        return self._call(self._client.submit, session, source)

    def wait(self, session: str, command: Any, timeout: float | None = None) -> dict[str, Any]:
        return self._call(self._client.wait, session, command, timeout)

    def cancel(self, session: str, command: Any) -> dict[str, Any]:
        return self._call(self._client.cancel, session, command)

    def locks(self) -> list[dict[str, Any]]:
        return self._call(self._client.locks)


@contextlib.contextmanager
def connect(
    url: str | None = None, token: str | None = None, *, path: str | Path | None = None, **kw: Any
) -> Iterator[SyncClient]:
    """``with connect() as client:`` a blocking client (URL + token, or the connection file)."""
    if url is not None:
        if token is None:
            raise ValueError("connect(url, token): the token printed by the server is needed")
        client = Client(url, token, **kw)
    else:
        client = Client.from_connection_file(path, **kw)
    with SyncClient(client) as sync:
        yield sync
