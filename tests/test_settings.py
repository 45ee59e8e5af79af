"""Persistent typed settings in the settings Redis, with defaults from the configuration."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel, Field

from blissng.config import Config, ConfigContext, ConfigModel
from blissng.redisdb import ObjectSettings, SettingsError, SettingsStore, async_client, redis_stack


class AxisSettings(BaseModel):
    offset: float = 0.0
    velocity: float = Field(1.0, gt=0)
    limits: tuple[float, float] = (-100.0, 100.0)


class Motor:
    """A configurable object whose settings default to its configured parameters."""

    class Parameters(ConfigModel):
        velocity: float = 1.0

    def __init__(self, name: str, settings: ObjectSettings[AxisSettings]) -> None:
        self.name = name
        self.settings = settings

    @classmethod
    def from_config(cls, name: str, params: Parameters, context: ConfigContext) -> Motor:
        assert context.settings is not None
        defaults = AxisSettings(velocity=params.velocity)
        return cls(name, context.settings.object(name, AxisSettings, defaults))

    async def connect(self) -> None:
        await self.settings.load()


@pytest.mark.anyio
async def test_defaults_set_reset(redis_urls):
    async with async_client(redis_urls.settings) as client:
        store = SettingsStore(client)
        m1 = store.object("m1", AxisSettings, AxisSettings(velocity=2.0))
        assert (await m1.load()).velocity == 2.0
        values = await m1.set(offset="1.5", limits=[-5, 5])
        assert values.offset == 1.5 and values.limits == (-5.0, 5.0)
        # a second view of the same object (another process) reads what was stored
        again = store.object("m1", AxisSettings, AxisSettings(velocity=2.0))
        loaded = await again.load()
        assert (loaded.offset, loaded.velocity, loaded.limits) == (1.5, 2.0, (-5.0, 5.0))
        assert set(await client.hkeys("settings:m1")) == {b"offset", b"limits"}
        assert (await again.reset("offset")).offset == 0.0
        assert (await again.reset()).limits == (-100.0, 100.0)
        assert await client.exists("settings:m1") == 0


@pytest.mark.anyio
async def test_invalid_changes_store_nothing(redis_urls):
    async with async_client(redis_urls.settings) as client:
        m1 = SettingsStore(client).object("m1", AxisSettings)
        with pytest.raises(SettingsError, match="invalid setting for 'm1'.*velocity"):
            await m1.set(offset=3, velocity=-1)
        with pytest.raises(SettingsError, match="'m1' has no setting speed"):
            await m1.set(speed=3)
        assert await client.exists("settings:m1") == 0
        assert m1.values == AxisSettings()


@pytest.mark.anyio
async def test_stored_values_that_no_longer_fit(redis_urls):
    async with async_client(redis_urls.settings) as client:
        await client.hset("settings:m1", mapping={"velocity": "-3", "removed_setting": "1"})
        m1 = SettingsStore(client).object("m1", AxisSettings)
        with pytest.raises(SettingsError, match="stored settings of 'm1' are invalid"):
            await m1.load()
        await client.hdel("settings:m1", "velocity")
        assert (await m1.load()) == AxisSettings()  # the removed setting is ignored


@pytest.mark.anyio
async def test_config_objects_get_their_settings(redis_urls, write_config, config_dir):
    write_config("m.yml", f"name: m1\nclass: {__name__}:Motor\nvelocity: 4\n")
    async with async_client(redis_urls.settings) as client:
        config = await Config.open(config_dir, settings=SettingsStore(client))
        m1 = config.get("m1")
        await m1.connect()
        assert m1.settings.values.velocity == 4.0
        await m1.settings.set(velocity=7)
        config.reload()
        fresh = config.get("m1")
        assert fresh is not m1
        await fresh.connect()
        assert fresh.settings.values.velocity == 7.0


def test_settings_survive_a_restart_of_the_servers(tmp_path, monkeypatch):
    monkeypatch.delenv("BLISSNG_REDIS_URL", raising=False)
    state = tmp_path / "state"

    async def change(url: str) -> None:
        async with async_client(url) as client:
            m1 = SettingsStore(client).object("m1", AxisSettings)
            await m1.set(offset=2.5, limits=(0, 10))

    async def read(url: str) -> Any:
        async with async_client(url) as client:
            return await SettingsStore(client).object("m1", AxisSettings).load()

    with redis_stack(state) as stack:
        anyio.run(change, stack.urls.settings)
    with redis_stack(state) as stack:
        values = anyio.run(read, stack.urls.settings)
    assert (values.offset, values.limits, values.velocity) == (2.5, (0.0, 10.0), 1.0)
