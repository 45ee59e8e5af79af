"""The blissng pytest plugin (entry point ``pytest11``): real Redis, clean key spaces, configs.

Fixtures
--------
``redis_stack``  (session)  the two embedded redis-servers (settings, data) on unix sockets,
                            started once per test session.
``redis_urls``   (test)     :class:`~blissng.redisdb.RedisUrls` of a database of its own in each
                            server, emptied before the test. Databases 0 and ``RESERVED_DBS``
                            stay for session-scoped helpers (a Celery worker keeps its keys there)
                            and are never flushed by a test.
``config_dir``   (test)     an empty configuration directory.
``write_config`` (test)     ``write_config("motors.yml", text)`` writes a YAML file there.
``load_config``  (test)     ``load_config()``: a ``Config`` of it; its objects closed after.

A beamline's configuration: ``blissng_config``, ``blissng_session``, ``scan_context``,
``blissng_server``, ``blissng_client`` (docs/testing.md).

Simulator fixtures: ``sims``, ``bad_device``, ``tango_sim`` and ``epics_ioc``; the Celery
worker: ``celery_worker``.

Helpers, offered by :mod:`blissng.testing`: ``wait_until``, ``RecordingSink``,
``redis_scan_context``, ``clean_databases``...

This module is pytest's entry point (``pytest11``): its path is named by the installed
distribution's metadata, so it stays public; the fixtures live in the package's private
modules and are registered here by import.

The plugin changes no global setting of the projects that install blissng (no hypothesis
profile, no timeout): those are each project's own choice.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blissng.redisdb import RedisStack, RedisUrls, start_redis

from ._beamline import add_options, close_built
from ._databases import RESERVED_DBS, clean_databases


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.fixture(scope="session")
def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisStack]:
    """The embedded Redis servers of the test session (never an external one)."""
    # never BLISSNG_REDIS_URL: tests flush their databases, a developer's Redis must not be it
    stack = start_redis(tmp_path_factory.mktemp("redis"), maxmemory="512mb", environment=False)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def redis_urls(redis_stack: RedisStack) -> RedisUrls:
    """A clean database of this test's own in each Redis server."""
    return clean_databases(redis_stack)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """An empty configuration directory."""
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
async def load_config(config_dir: Path) -> AsyncIterator[Callable[[], Any]]:
    """``load_config()``: a ``Config`` of ``config_dir`` as written so far; every object it
    built is closed after the test (anyio tests)."""
    from blissng.config import Config

    configs: list[Config] = []

    def load() -> Config:
        configs.append(Config(config_dir))
        return configs[-1]

    yield load
    for config in configs:
        await close_built(config)


@pytest.fixture
def write_config(config_dir: Path) -> Callable[[str, str], Path]:
    """``write_config("sub/file.yml", yaml_text)``: dedented, parents created."""

    def write(relative: str, text: str) -> Path:
        path = config_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


from ._beamline import (  # noqa: E402, F401 - a beamline's own tests
    blissng_client,
    blissng_config,
    blissng_server,
    blissng_server_options,
    blissng_session,
    scan_context,
)
from ._celery import celery_worker  # noqa: E402, F401 - the workflows worker fixture
from ._control_systems import (  # noqa: E402, F401
    epics_ioc,
    epics_ioc_session,
    tango_sim,
    tango_sim_session,
)
from ._simulators import bad_device, bad_device_session, sim_host_session, sims  # noqa: E402, F401

# Beside the fixtures, what projects imported from the plugin before blissng.testing offered it.
__all__ = ["RESERVED_DBS", "clean_databases"]
