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

Every test gets pytest-timeout's limit from the project configuration; the hypothesis profile
``blissng`` has no deadline (a loaded CI machine is not a failing test).
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blissng.redisdb import RedisStack, RedisUrls, start_redis
from blissng.redisdb.server import DATABASES

# Databases kept for session-scoped helpers: 0 (default) and the top few (Celery, ...).
RESERVED_DBS = frozenset({0, DATABASES - 1, DATABASES - 2, DATABASES - 3})
_TEST_DBS = [db for db in range(DATABASES) if db not in RESERVED_DBS]
CELERY_DB = DATABASES - 1


def pytest_configure(config: pytest.Config) -> None:
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # pragma: no cover - hypothesis is a dev extra
        return
    settings.register_profile(
        "blissng", deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile("blissng")


@pytest.fixture(scope="session")
def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisStack]:
    """The embedded Redis servers of the test session (never an external one)."""
    # never BLISSNG_REDIS_URL: tests flush their databases, a developer's Redis must not be it
    stack = start_redis(tmp_path_factory.mktemp("redis"), maxmemory="512mb", environment=False)
    try:
        yield stack
    finally:
        stack.stop()


_db_cycle = itertools.cycle(_TEST_DBS)


@pytest.fixture
def redis_urls(redis_stack: RedisStack) -> RedisUrls:
    """A clean database of this test's own in each Redis server."""
    import redis

    urls = redis_stack.urls.with_db(next(_db_cycle))
    for url in (urls.settings, urls.data):
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
    return urls


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """An empty configuration directory."""
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
def write_config(config_dir: Path) -> Callable[[str, str], Path]:
    """``write_config("sub/file.yml", yaml_text)``: dedented, parents created."""

    def write(relative: str, text: str) -> Path:
        path = config_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


from blissng.testing.celery import celery_worker  # noqa: E402, F401 - the workflows worker fixture
from blissng.testing.simulators import bad_device, bad_device_session, sim_host_session, sims  # noqa: E402, F401
