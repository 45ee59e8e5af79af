"""The synchronous facade of devices (blissng.session.synchronous): in a session's commands (worker
threads) devices work without await, derived from their async API; in async code the same
objects are awaited as before."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis.asyncio

from blissng.config import Config
from blissng.devices import Axis
from blissng.errors import Aborted
from blissng.redisdb import RedisUrls, SettingsStore, async_client
from blissng.session import FacadeError, Session, synchronous
from blissng.session._facade import facade_class
from test_server import CONFIG

pytestmark = pytest.mark.anyio


@pytest.fixture
async def session(
    write_config: Any, config_dir: Any, redis_urls: RedisUrls
) -> AsyncIterator[Session]:
    write_config("beamline.yml", CONFIG)
    client = async_client(redis_urls.settings)
    try:
        config = Config(config_dir, settings=SettingsStore(client))
        async with Session("facade", config=config, redis=redis_urls, workflows=False) as s:
            yield s
    finally:
        await client.aclose()


async def run(session: Session, source: str) -> Any:
    with anyio.fail_after(30):
        return await session.execute(source)


async def test_motors_without_await_in_commands_and_with_await_in_async_code(
    session: Session, redis_urls: RedisUrls
) -> None:
    m1 = session.objects["m1"]
    assert isinstance(m1, Axis) and type(m1).__name__ == "Axis"
    assert session.namespace["m1"] is m1 and session.config.get("m1") is m1
    assert await run(session, "m1.move(2)\nm1.position") == 2  # blocks until it stopped
    assert not m1.is_moving
    await run(session, "m1.velocity = 20")
    await run(session, "m1.limits = (-5, 5)")
    assert (m1.velocity, m1.limits) == (20, (-5, 5))
    stored = redis.asyncio.Redis.from_url(redis_urls.settings)
    try:  # persisted, as BLISS settings are
        assert float(await stored.hget("settings:m1", "velocity")) == 20
        assert float(await stored.hget("settings:m1", "high_limit")) == 5
    finally:
        await stored.aclose()
    with pytest.raises(Exception, match="outside the software limits"):
        await run(session, "m1.move(6)")
    await run(session, "m1.position = 10")  # BLISS: sets the user position (the offset)
    assert m1.position == 10 and m1.offset == 8
    assert (
        await run(session, "def align():\n    m1.move(11)\n    return m1.position\nalign()") == 11
    )
    # The async API is untouched: await on the loop, in async code and at the prompt.
    await m1.move(12)
    assert m1.position == 12
    assert await run(session, "await m1.move(13)\nm1.position") == 13
    with pytest.raises(FacadeError, match="await m1.set_velocity"):
        m1.velocity = 3  # on the event loop: it would block it
    assert m1.velocity == 20


async def test_ctrl_c_stops_a_blocking_move(session: Session) -> None:
    slow = session.objects["slow"]
    cmd = session.submit_source("slow.move(100)")
    with anyio.fail_after(20):
        while not slow.is_moving:
            await anyio.sleep(0.01)
    started = time.monotonic()
    cmd.cancel()
    with anyio.fail_after(20), pytest.raises(Aborted):
        await cmd.wait()
    assert time.monotonic() - started < 10
    assert not slow.is_moving and slow.position < 50
    assert slow.state.value == "READY"


async def test_counters_and_controllers_in_commands(session: Session) -> None:
    values = await run(session, "simA.count(0.01)")
    assert set(values) == {"da"} and float(values["da"]) >= 0
    assert await run(session, "[c.name for c in simA.counters]") == ["da"]
    # A sampling counter's mode, as BLISS users set it: checked, used from the next count.
    await run(session, "da.mode = 'stats'")
    assert await run(session, "da.mode.value, da.shape") == ("STATS", (7,))
    stats = await run(session, "simA.count(0.01)['da']")
    assert stats.shape == (7,) and stats[1] >= 1  # [mean, N, std, var, min, max, p2v]
    with pytest.raises(Exception, match="unknown sampling mode 'often'"):
        await run(session, "da.mode = 'often'")
    await run(session, "da.mode = 'MEAN'")
    assert float(await run(session, "simA.count(0.01)['da']")) >= 0


def test_the_facade_is_derived_once_per_class_and_leaves_others_alone() -> None:
    class Plain:
        def value(self) -> int:
            return 1

    class Device:
        async def read(self) -> int:
            return 1

    assert facade_class(Plain) is Plain and synchronous(Plain()).__class__ is Plain
    one, two = synchronous(Device()), synchronous(Device())
    assert type(one) is type(two) is facade_class(Device) and isinstance(one, Device)
    assert synchronous(one) is one and synchronous(Device) is Device
