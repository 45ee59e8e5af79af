"""The server's API driven by the Python client (blissng.client): sessions, objects and
positions, a scan run in a session and followed through the events and the data Redis,
cancellation, errors, security (token, Origin), the OpenAPI description, the sync facade."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import BaseModel

from blissng.client import Client, ClientError, CommandFailed, connect
from blissng.config import Config
from blissng.redisdb import RedisUrls, SettingsStore, async_client
from blissng.scans import close_shared_clients
from blissng.session import Server
from blissng.web import ENDPOINTS, WebOptions, web_runner
from blissng.web._endpoints import openapi_schema
from blissng.web._openapi import ERROR
from blissng.web._schemas import Object
from test_server import CONFIG, SESSIONS

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(
    write_config, config_dir, redis_urls: RedisUrls, tmp_path
) -> AsyncIterator[Server]:
    write_config("beamline.yml", CONFIG)
    write_config("server.yml", SESSIONS)
    client = async_client(redis_urls.settings)
    config = Config(config_dir, settings=SettingsStore(client))
    try:
        async with Server(
            config,
            redis_urls,
            state_dir=tmp_path / "state",
            writer=False,
            web=web_runner(WebOptions(port=0)),
        ) as srv:
            yield srv
    finally:
        await client.aclose()
        await close_shared_clients()


def connection_file(server: Server) -> Path:
    return server.state_dir / "web.json"


@pytest.mark.timeout(60)
async def test_client_runs_a_scan_follows_it_and_reads_positions(server: Server) -> None:
    async with Client.from_connection_file(connection_file(server), name="gui") as client:
        sessions = {s["name"]: s for s in await client.sessions()}
        assert sorted(sessions) == ["alpha", "beta"] and "m1" in sessions["alpha"]["motors"]
        await client.run("alpha", "mv(m1, 0.5)")
        positions = await client.positions("alpha")
        assert positions["m1"] == pytest.approx(0.5)
        objects = await client.objects("alpha")
        assert objects["m1"]["kind"] == "motor" and objects["simA"]["counters"] == ["da"]

        events: list[dict[str, Any]] = []
        hello = anyio.Event()
        ended = anyio.Event()

        async def follow() -> None:
            async with client.events("alpha") as stream:
                async for event in stream:
                    events.append(event)
                    if event["type"] == "hello":
                        hello.set()
                    if event["type"] == "scan" and event["phase"] == "end":
                        ended.set()
                        return

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            with anyio.fail_after(20):
                await hello.wait()
            result = await client.run("alpha", "ascan(m1, 0, 1, 10, 0.01, simA)", timeout=60)
            with anyio.fail_after(20):
                await ended.wait()
        assert result["state"] == "done" and result["scan"]["state"] == "done"
        scans = [e for e in events if e["type"] == "scan"]
        assert [e["phase"] for e in scans] == ["start", "end"]
        assert scans[0]["scan_id"] == result["scan"]["scan_id"]
        assert scans[0]["data_url"] == server.redis.data  # type: ignore[union-attr]
        assert any(e["type"] == "positions" and "m1" in e["motors"] for e in events)
        # The data, read directly from the data Redis the server advertises.
        view = await client.scan(result)
        assert view.number == result["scan"]["number"]
        channel = next(name for name in view.channels if name.endswith("m1"))
        data = await view[channel].get(0)
        assert data.tolist() == pytest.approx([i / 10 for i in range(11)], abs=1e-6)  # 10 intervals
        assert (await client.positions("alpha"))["m1"] == pytest.approx(1.0)


@pytest.mark.timeout(60)
async def test_api_commands_are_shown_in_the_session_fail_and_cancel(server: Server) -> None:
    alpha = server.session("alpha")
    shown: list[str] = []
    detach = alpha.output.attach(shown.append)
    try:
        async with Client.from_connection_file(connection_file(server), name="gui") as client:
            state = await client.run("alpha", "print('hello from the api'); 1 + 1")
            with pytest.raises(CommandFailed, match="ZeroDivisionError"):
                await client.run("alpha", "1 / 0")
            slow = alpha.objects["slow"]
            command = await client.submit("alpha", "mv(slow, 5)")
            with anyio.fail_after(20):
                while not slow.is_moving:
                    await anyio.sleep(0.01)
            # Another session wanting slow is refused, naming the API client's command.
            with pytest.raises(CommandFailed, match="session 'alpha', console 'api:gui'"):
                await client.run("beta", "mv(slow, 0)")
            cancelled = await client.cancel("alpha", command)
            assert cancelled["state"] == "cancelled" and not slow.is_moving
            with pytest.raises(ClientError, match="no session 'nope'.*alpha, beta"):
                await client.run("nope", "1")
            with pytest.raises(ClientError, match="SyntaxError"):
                await client.run("alpha", "mv(")
    finally:
        detach()
    text = "".join(shown)
    assert "[api:gui] print('hello from the api')" in text and "hello from the api" in text
    assert state["result"] is None or state["result"] == "2"


async def test_token_origin_and_openapi(server: Server) -> None:
    assert server.url is not None
    base = server.url.split("/?")[0]
    async with httpx.AsyncClient(base_url=base) as http:
        refused = await http.get("/api/sessions")
        assert refused.status_code == 403 and "token" in refused.json()["error"]
        wrong = await http.get("/api/sessions", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 403
        token = server.url.split("token=")[1]
        auth = {"authorization": f"Bearer {token}"}
        assert (await http.get("/api/sessions", headers=auth)).status_code == 200
        evil = await http.post(
            "/api/sessions/alpha/commands",
            json={"source": "1"},
            headers={**auth, "origin": "https://evil.example.org"},
        )
        assert evil.status_code == 403 and "Origin" in evil.json()["error"]
        bad = await http.post("/api/sessions/alpha/commands", content=b"{", headers=auth)
        assert bad.status_code == 400 and "JSON" in bad.json()["error"]
        schema = (await http.get("/api/openapi.json")).json()
        assert schema["openapi"].startswith("3.")
        assert "/api/sessions/{session}/commands" in schema["paths"]
        # Every documented path answers (with the token).
        for path in schema["paths"]:
            if "{" not in path:
                assert (await http.get(path, headers=auth)).status_code == 200, path


@pytest.mark.timeout(60)
async def test_sync_client(server: Server) -> None:
    file = connection_file(server)

    def script() -> dict[str, Any]:
        with connect(path=file, name="script") as client:
            client.run("beta", "mv(m2, 0.25)")
            return client.positions("beta")

    positions = await anyio.to_thread.run_sync(script)
    assert positions["m2"] == pytest.approx(0.25)


@pytest.mark.timeout(90)
async def test_a_web_console_command_holds_its_motor_in_the_console_name(server: Server) -> None:
    """The holder of a lock taken by a command typed in a browser tab is that tab's console."""
    from websockets.sync.client import connect as ws_connect

    from blissng.locks import DeviceLocked
    from blissng.web import ConsoleClient

    assert server.url is not None
    base, token = server.url.split("/?token=")
    uri = base.replace("http://", "ws://") + f"/ws/console/alpha?token={token}"
    slow = server.session("alpha").objects["slow"]

    def open_tab() -> ConsoleClient:
        tab = ConsoleClient(ws_connect(uri, open_timeout=10, max_size=None))
        tab.type("mv(slow, 5)\r")
        tab.wait_status(busy=True, timeout=30)
        return tab

    tab = await anyio.to_thread.run_sync(open_tab)
    try:
        with anyio.fail_after(20):
            while not slow.is_moving:
                await anyio.sleep(0.01)
        with pytest.raises(DeviceLocked) as info:
            await server.session("beta").execute("mv(slow, 0)")
        assert f"session 'alpha', console '{tab.console_id}', running 'mv(slow, 5)'" in str(
            info.value
        )

        def interrupt() -> None:
            tab.type("\x03")
            tab.wait_status(busy=False, timeout=30)

        await anyio.to_thread.run_sync(interrupt)
        assert not slow.is_moving
        await server.session("beta").execute("mv(slow, 0)")  # free again
    finally:
        await anyio.to_thread.run_sync(tab.close)


def _references(node: Any) -> list[str]:
    """Every ``$ref`` in a JSON document."""
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


def test_every_schema_the_openapi_description_refers_to_is_in_its_components() -> None:
    schema = openapi_schema()
    references = set(_references(schema))
    assert "#/components/schemas/Command" in references
    assert "#/components/schemas/Scan" in references  # a model a model refers to
    components = schema["components"]["schemas"]
    prefix = "#/components/schemas/"
    assert all(ref.startswith(prefix) for ref in references), references
    assert {ref.removeprefix(prefix) for ref in references} <= components.keys()
    assert all("$defs" not in component for component in components.values())


QUERY_VALUES = {"boolean": "true", "number": "1"}  # ?read=true, ?wait=1 (the command ended)


def _matches(model: type[BaseModel], answer: httpx.Response) -> None:
    """The answer validates against the model, and nothing it holds is left out of it."""
    parsed = model.model_validate_json(answer.text, strict=True)
    assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == answer.json()


@pytest.mark.timeout(90)
async def test_every_endpoint_answers_what_its_openapi_schema_says(server: Server) -> None:
    """Each endpoint of ENDPOINTS, called for real: its answer matches the model the description
    derives its schema from (fields, types and no undeclared field), errors included."""
    assert server.url is not None
    base, token = server.url.split("/?token=")
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=60) as http:
        ran = await http.post(
            "/api/sessions/alpha/commands",
            json={"source": "ascan(m1, 0, 1, 3, 0.01, simA)", "timeout": 50},
        )
        assert ran.status_code == 200 and ran.json()["scan"]["number"] >= 1, ran.text
        params = {"session": "alpha", "name": "m1", "id": str(ran.json()["id"])}
        seen = set()
        for endpoint in ENDPOINTS:
            path = endpoint.path.format(**params)
            body = {"source": "print('hi'); 1 + 1"} if endpoint.body is not None else None
            query = {q.name: QUERY_VALUES[q.type] for q in endpoint.query}  # as it declares them
            answer = await http.request(endpoint.method, path, json=body, params=query)
            answered = endpoint.responses[answer.status_code]
            _matches(answered[0] if isinstance(answered, tuple) else answered, answer)
            seen.add(endpoint.handler)
        for name in ("simA", "nothing"):  # a counter controller, and a 404
            answer = await http.get(f"/api/sessions/alpha/objects/{name}")
            _matches(Object if answer.status_code == 200 else ERROR, answer)
    assert len(seen) == len(ENDPOINTS)
