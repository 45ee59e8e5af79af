"""A saved scan after its data left Redis, as a user meets it (issue 12, findings 1 and 2).

A real server with its supervised writer runs ``ascan`` in two sessions. In ``beta`` the
memory guard trims the written scan's streams to their seals; the plot websocket (what a
browser tab opens), ``get_data()``, ``cen`` and ``peak`` then read the file. In ``alpha`` the
written scan's keys expire (a TTL of 1 s): ``get_data()``, ``cen``, ``peak`` and ``goto_peak``
read the file. Every answer equals what was read while the scan was whole in Redis.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import numpy as np
import pytest
from websockets.asyncio.client import connect

from beamlines import MOCKUP_BEAMLINE
from blissng.config import Config
from blissng.data import MemoryGuard, trim_written
from blissng.data import keys as data_keys
from blissng.redisdb import RedisUrls, SettingsStore, async_client
from blissng.scans import close_shared_clients
from blissng.session import Server, SessionSettings
from blissng.testing import wait_until
from blissng.web import WebOptions, web_runner

pytestmark = pytest.mark.anyio

ASCAN = "s = ascan(m1, 0, 2, 20, 0.01, diode)"


@pytest.fixture
async def server(
    write_config, config_dir, redis_urls: RedisUrls, tmp_path
) -> AsyncIterator[Server]:
    write_config("beamline.yml", MOCKUP_BEAMLINE)
    write_config(
        "server.yml",
        f"""
sessions:
  - name: alpha
    workflows: false
    scan_saving: {{base_path: {tmp_path / "data"}, collection: a}}
  - name: beta
    workflows: false
    scan_saving: {{base_path: {tmp_path / "data"}, collection: b}}
""",
    )
    client = async_client(redis_urls.settings)
    store = SettingsStore(client)
    # alpha's written scans leave Redis after 1 s (a session setting; default 300 s)
    await store.object("session:alpha", SessionSettings).set(written_ttl=1)
    try:
        async with Server(
            Config(config_dir, settings=store),
            redis_urls,
            state_dir=tmp_path / "state",
            memory_guard=False,  # the test runs the guard's rounds itself
            web=web_runner(WebOptions(port=0)),
        ) as srv:
            yield srv
    finally:
        await client.aclose()
        await close_shared_clients()


async def run_scan(server: Server, session: str) -> tuple[str, dict[str, Any]]:
    """Run the ascan, wait until the writer has it on disk; (scan id, what Redis had)."""
    commands = server.session(session)
    await commands.execute(ASCAN)
    scan_id = commands.namespace["s"].scan_id
    before = {
        "data": await commands.execute("s.get_data()"),
        "cen": await commands.execute("cen(diode)"),
        "peak": await commands.execute("peak(diode)"),
    }
    client = async_client(server.redis.data)  # type: ignore[union-attr]
    try:
        ack = data_keys.ack_key(scan_id)
        await wait_until(lambda: client.hget(ack, "written"), timeout=30)
    finally:
        await client.aclose()
    return scan_id, before


async def assert_reads_the_file(server: Server, session: str, before: dict[str, Any]) -> None:
    commands = server.session(session)
    with anyio.fail_after(30):
        data = await commands.execute("s.get_data()")
        assert sorted(data) == sorted(before["data"])
        for name, values in before["data"].items():
            np.testing.assert_array_equal(data[name], values, err_msg=name)
        assert await commands.execute("cen(diode)") == pytest.approx(before["cen"])
        assert await commands.execute("peak(diode)") == pytest.approx(before["peak"])


async def plot_points(server: Server, session: str) -> tuple[dict[str, list[Any]], Any]:
    """What the plot websocket sends for the session's last scan: (points, end payload)."""
    connection = json.loads((server.state_dir / "web.json").read_text())
    url = connection["url"].replace("http", "ws", 1) + f"/ws/plot/{session}"
    points: dict[str, list[Any]] = {}
    async with connect(url + f"?token={connection['token']}") as websocket:
        with anyio.fail_after(30):
            async for raw in websocket:
                kind, payload = json.loads(raw)
                if kind == "points":
                    for name, values in payload.items():
                        points.setdefault(name, []).extend(values)
                elif kind == "error":
                    raise AssertionError(f"plot websocket: {payload}")
                elif kind == "end":
                    return points, payload
    raise AssertionError("the plot websocket closed before the end of the scan")


@pytest.mark.timeout(180)
@pytest.mark.slow
async def test_trimmed_and_expired_scans_are_read_from_their_files(server: Server) -> None:
    assert server.redis is not None
    client = async_client(server.redis.data)
    try:
        # beta: the memory guard's trimming, short of room, trims the written scan to its
        # seals (all that is acknowledged; nothing dropped: the test needs the seals there).
        scan_id, before = await run_scan(server, "beta")
        assert await trim_written(client, 0, drop_above=2**62) > 0
        await MemoryGuard(server.redis.data).check()  # room again: new scans may start
        document = json.loads(await client.hget(data_keys.scan_key(scan_id), "doc"))
        for channel in document["channels"].values():
            entries = await client.xrange(channel["key"])
            assert len(entries) == 1 and b"end" in entries[0][1], channel["name"]
        points, end = await plot_points(server, "beta")
        assert end["state"] == "closed"
        for name, values in points.items():
            np.testing.assert_allclose(values, before["data"][name], err_msg=name)
        assert len(points) >= 2  # the motor and the counter at least
        await assert_reads_the_file(server, "beta", before)

        # alpha: the written scan's keys expire (TTL 1 s).
        scan_id, before = await run_scan(server, "alpha")
        key = data_keys.scan_key(scan_id)
        await wait_until(lambda: _gone(client, key), timeout=30)
        await assert_reads_the_file(server, "alpha", before)
        alpha = server.session("alpha")
        await alpha.execute("mv(m1, 0)")
        assert await alpha.execute("goto_peak(diode)") == pytest.approx(before["peak"])
        assert await alpha.execute("m1.position") == pytest.approx(before["peak"])
    finally:
        await client.aclose()


async def _gone(client: Any, key: str) -> bool:
    return not await client.exists(key)
