"""Who may connect, and what bad input does: a clear close reason, nothing else disturbed."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from blissng.shell import ShellHub, SimpleSession
from blissng.web import (
    COOKIE_NAME,
    ConsoleClient,
    ServerThread,
    WebSecurity,
    close_reason,
    create_app,
)

TOKEN = "sec-token-456"
GUI = "http://gui.example.org"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    base = tmp_path_factory.mktemp("websec")
    hub = ShellHub(log_dir=base / "logs", max_consoles=100)
    security = WebSecurity(token=TOKEN, allowed_origins=frozenset({GUI}))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with SimpleSession("small") as small:
            await hub.add_session(small, max_consoles=3)
            yield

    app = create_app(
        hub,
        security=security,
        sessions=[SimpleSession("demo")],
        lifespan=lifespan,
        max_connections=6,
    )
    with ServerThread(app, port=0) as server:  # TCP: Host and Origin as a browser sends them
        yield server


def refused(server: ServerThread, **kwargs: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        server.connect("/ws/console/demo", **kwargs)
    return info.value


def test_websocket_without_token_is_refused(server: ServerThread) -> None:
    error = refused(server)
    assert error.response.status_code == 403
    assert b"token" in error.response.body


def test_websocket_with_wrong_token_is_refused(server: ServerThread) -> None:
    assert refused(server, token="guess").response.status_code == 403


def test_websocket_from_another_site_is_refused(server: ServerThread) -> None:
    error = refused(server, token=TOKEN, headers={"Origin": "http://evil.example.com"})
    assert error.response.status_code == 403
    assert b"Origin" in error.response.body


def test_dns_rebinding_host_is_refused(server: ServerThread) -> None:
    error = refused(server, token=TOKEN, host_header=f"evil.example.com:{server.port}")
    assert error.response.status_code == 403
    assert b"Host" in error.response.body
    with httpx.Client(base_url=server.base_url) as http:
        page = http.get(f"/?token={TOKEN}", headers={"Host": "evil.example.com"})
        assert page.status_code == 403


def test_same_origin_and_allowed_gui_origin_are_accepted(server: ServerThread) -> None:
    for origin in (server.base_url, GUI):
        tab = ConsoleClient(
            server.connect("/ws/console/demo", token=TOKEN, headers={"Origin": origin})
        )
        assert tab.hello["session"] == "demo"
        tab.close()


def test_page_needs_the_token_then_uses_a_cookie(server: ServerThread) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        assert http.get("/").status_code == 403
        assert http.get("/shell/sessions").status_code == 403
        first = http.get(f"/?token={TOKEN}", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/"
        assert "httponly" in first.headers["set-cookie"].lower()
        assert http.cookies.get(COOKIE_NAME) == TOKEN
        sessions = http.get("/shell/sessions").json()["sessions"]
        assert [s["name"] for s in sessions] == ["demo", "small"]
        # the cookie also opens websockets (what the page does)
        tab = ConsoleClient(
            server.connect("/ws/console/demo", headers={"Cookie": f"{COOKIE_NAME}={TOKEN}"})
        )
        tab.close()


def _check_still_serving(server: ServerThread, other: ConsoleClient) -> None:
    assert "Out [" in other.run("40 + 2")
    fresh = ConsoleClient.open(server, "demo", token=TOKEN)
    assert "Out [" in fresh.run("1 + 1")
    fresh.close()


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        ("not json", 4400, "not JSON"),
        (json.dumps({"stdin": "x"}), 4400, "JSON array"),
        (json.dumps(["launch", 1]), 4400, "unknown message type 'launch'"),
        (json.dumps(["stdin", 5]), 4400, "malformed stdin"),
        (json.dumps(["resize", 0, 80]), 4400, "malformed resize"),
        (json.dumps(["stdin", "x" * 300_000]), 1009, "paste too large"),
        ("[" * 2_000_000, 1009, "message too large"),
    ],
)
def test_bad_messages_close_only_that_websocket(
    server: ServerThread, frame: str, code: int, words: str
) -> None:
    other = ConsoleClient.open(server, "demo", token=TOKEN)
    try:
        ws = server.connect("/ws/console/demo", token=TOKEN)
        assert json.loads(ws.recv(timeout=10))[0] == "hello"
        ws.send(frame)
        got_code, reason = close_reason(ws)
        assert got_code == code
        assert words in reason
        _check_still_serving(server, other)
    finally:
        other.close()


def test_binary_frames_are_refused(server: ServerThread) -> None:
    ws = server.connect("/ws/console/demo", token=TOKEN)
    ws.send(b"\x00\x01")
    code, reason = close_reason(ws)
    assert code == 4400 and "binary" in reason


def test_unknown_session_closes_with_the_known_ones(server: ServerThread) -> None:
    ws = server.connect("/ws/console/nosuch", token=TOKEN)
    code, reason = close_reason(ws)
    assert code == 4404
    assert "nosuch" in reason and "demo" in reason


def test_too_many_consoles_in_a_session(server: ServerThread) -> None:
    tabs = [ConsoleClient.open(server, "small", token=TOKEN) for _ in range(3)]
    try:
        code, reason = close_reason(server.connect("/ws/console/small", token=TOKEN))
        assert code == 4429 and "limit 3" in reason
        # attaching to an existing console is still possible
        again = ConsoleClient.open(server, "small", token=TOKEN, console=tabs[0].console_id)
        again.close()
        # closing a console for good makes room
        assert tabs.pop().close_console() == (1000, "console closed")
        ConsoleClient.open(server, "small", token=TOKEN).close()
    finally:
        for tab in tabs:
            tab.close()


def test_too_many_connections(server: ServerThread) -> None:
    tabs: list[ConsoleClient] = []
    first = ConsoleClient.open(server, "demo", token=TOKEN)
    try:
        for _ in range(5):
            tabs.append(ConsoleClient.open(server, "demo", token=TOKEN, console=first.console_id))
        code, reason = close_reason(server.connect("/ws/console/demo", token=TOKEN))
        assert code == 4429 and "too many connections" in reason
        assert "Out [" in first.run("7 * 6")
    finally:
        for tab in tabs:
            tab.close()
        first.close()


def test_a_watch_link_carries_its_own_read_only_capability(server: ServerThread) -> None:
    """The server, not the client, decides: a view key watches one console and cannot type,
    control it, watch another console or use the token's other doors."""
    with ConsoleClient.open(server, "demo", token=TOKEN) as tab:
        with httpx.Client(base_url=server.base_url) as http:
            query = {"session": "demo", "console": tab.console_id}
            assert http.get("/shell/view-link", params=query).status_code == 403  # no token
            link = http.get("/shell/view-link", params={**query, "token": TOKEN}).json()
            key = link["key"]
            assert link["path"] == f"/view/demo/{tab.console_id}?key={key}"
            assert TOKEN not in link["path"]
            assert key == WebSecurity(token=TOKEN).view_key("demo", tab.console_id)
            assert http.get(link["path"]).status_code == 200  # the page, without the token
            assert http.get(link["path"].replace("key=", "key=x")).status_code == 403
            assert http.get(f"/view/demo/other?key={key}").status_code == 403
            assert http.get(f"/shell/sessions?view={key}").status_code == 403
        viewer = ConsoleClient.open(server, "demo", view=key, console=tab.console_id)
        try:
            assert viewer.hello["mode"] == "view"  # without asking: the key only watches
            tab.run("print('seen-by-' + 'the-key')")
            viewer.expect("seen-by-the-key")
            viewer.type("typed_with_the_key = 1\r")
            viewer.send("ping", 1)  # the pong proves the stdin before it was handled
            while not viewer.pongs:
                viewer.receive(5)
            assert "False" in tab.run("'typed_with_the_key' in dir()")
        finally:
            viewer.close()
        control = server.connect("/ws/console/demo", view=key, console=tab.console_id,
                                 mode="control")  # fmt: skip
        code, reason = close_reason(control)
        assert code == 4403 and "control needs the token" in reason
        other = ConsoleClient.open(server, "demo", token=TOKEN)
        try:  # the key of one console opens no other (nor a new one)
            for params in ({"console": other.console_id}, {}):
                error = refused(server, view=key, mode="view", **params)
                assert error.response.status_code == 403
        finally:
            other.close()
        plot = server.connect("/ws/plot/demo", view=key, console=tab.console_id)
        plot.close()  # the session's plot is part of what a watcher sees


def test_a_token_never_looks_like_an_option() -> None:
    """``blissng shell --token TOKEN``: a token beginning with ``-`` (one in 64 did) was taken
    by argparse for an option, and the shell refused to start."""
    from blissng.web import new_token

    tokens = [new_token() for _ in range(5000)]
    assert not [token for token in tokens if token.startswith("-")]
    assert len(set(tokens)) == len(tokens) and {len(token) for token in tokens} == {32}
