"""pytest fixtures for testing a beamline's own configuration (docs/testing.md).

A beamline project points the plugin at its configuration directory in its pytest
configuration (``blissng_config = config`` under ``[tool.pytest.ini_options]``, relative to
that file); without it, the fixtures use :func:`config_dir` (what ``write_config`` wrote).
Every fixture runs on the test's own Redis databases (``redis_urls``) and saves scans under
the test's ``tmp_path``, never where the configuration says.

``blissng_config``  (test)        the :class:`~blissng.config.Config`; objects it built are
                                  closed after the test.
``blissng_session`` (test, async) a started :class:`~blissng.session.Session`: the
                                  one named by ``blissng_session`` in the pytest configuration,
                                  else the first of ``sessions:``, else one session ``main``
                                  with every object (no workflows).
``scan_context``    (test, async) a current :class:`~blissng.scans.ScanContext` (session
                                  ``test``): scan commands without a session.
``blissng_server``  (test, async) a running :class:`~blissng.session.Server` with its
                                  web app and API on a free port (no writer process unless
                                  ``blissng_server_options`` says ``writer=True``).
``blissng_client``  (test, async) a :class:`~blissng.client.Client` of that server's API.

The async fixtures need anyio tests (``pytestmark = pytest.mark.anyio``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from blissng.redisdb import RedisUrls

if TYPE_CHECKING:
    from blissng.client import Client
    from blissng.config import Config
    from blissng.scans import ScanContext
    from blissng.session import Server, Session

CONFIG_OPTION = "blissng_config"
SESSION_OPTION = "blissng_session"


def add_options(parser: pytest.Parser) -> None:
    parser.addini(CONFIG_OPTION, "the beamline's configuration directory", type="paths")
    parser.addini(SESSION_OPTION, "the session blissng_session starts", default="")


def _data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(exist_ok=True)
    return path


async def close_built(config: Config) -> None:
    """Close every object ``config`` built (their connections to the hardware); the first
    failure is raised (the test's teardown fails)."""
    from blissng.config import close_objects

    failures = await close_objects(config.built())
    if failures:
        raise next(iter(failures.values()))


@pytest.fixture
async def blissng_config(
    request: pytest.FixtureRequest, config_dir: Path, redis_urls: RedisUrls
) -> AsyncIterator[Config]:
    """The beamline's configuration (``blissng_config`` in the pytest configuration), else
    what the test wrote with ``write_config``; objects' settings in the test's Redis."""
    from blissng.config import Config
    from blissng.redisdb import SettingsStore, async_client

    configured = request.config.getini(CONFIG_OPTION)
    client = async_client(redis_urls.settings)
    try:
        directory = Path(configured[0]) if configured else config_dir
        config = await Config.open(directory, SettingsStore(client))
        try:
            yield config
        finally:
            await close_built(config)
    finally:
        await client.aclose()


def _test_sessions(config: Config, urls: RedisUrls, data: Path) -> list[Session]:
    """The sessions of ``sessions:``, else one session ``main`` with every object (no
    workflows), each saving under ``data``."""
    from blissng.session import Session, sessions_from_config

    saving = {"base_path": str(data)}
    sessions = sessions_from_config(config, urls, scan_saving=saving)
    if not sessions:
        sessions = [Session("main", config=config, redis=urls, scan_saving=saving, workflows=False)]
    return sessions


@pytest.fixture
async def blissng_session(
    request: pytest.FixtureRequest, blissng_config: Config, redis_urls: RedisUrls, tmp_path: Path
) -> AsyncIterator[Session]:
    """A started session of the configuration, scans saved under ``tmp_path / "data"``."""
    wanted = request.config.getini(SESSION_OPTION)
    sessions = _test_sessions(blissng_config, redis_urls, _data_dir(tmp_path))
    chosen = [s for s in sessions if s.name == wanted] if wanted else sessions[:1]
    if not chosen:
        known = ", ".join(s.name for s in sessions)
        raise pytest.UsageError(f"no session {wanted!r} in the configuration ({known})")
    async with chosen[0] as session:
        yield session


@pytest.fixture
async def scan_context(redis_urls: RedisUrls, tmp_path: Path) -> AsyncIterator[ScanContext]:
    """The current scan context of a session ``test``: scans numbered and published in the
    test's Redis, saved under ``tmp_path / "data"`` (collection ``sample``)."""
    from ._scan_context import redis_scan_context

    async with redis_scan_context(
        redis_urls, _data_dir(tmp_path), session="test", collection="sample"
    ) as context:
        yield context


@pytest.fixture
def blissng_server_options() -> dict[str, Any]:
    """Keyword arguments of the ``Server`` that ``blissng_server`` runs; override this
    fixture for the writer process (``{"writer": True}``) or a memory guard."""
    return {"writer": False, "memory_guard": False}


@pytest.fixture
async def blissng_server(
    blissng_config: Config,
    redis_urls: RedisUrls,
    tmp_path: Path,
    blissng_server_options: dict[str, Any],
) -> AsyncIterator[Server]:
    """The configuration served as ``blissng serve`` does: sessions, background tasks, the
    web app and its API on a free port (``server.state_dir / "web.json"`` says where)."""
    from blissng.session import Server
    from blissng.web import WebOptions, web_runner

    sessions = _test_sessions(blissng_config, redis_urls, _data_dir(tmp_path))
    async with Server(
        blissng_config,
        redis_urls,
        state_dir=tmp_path / "state",
        web=web_runner(WebOptions(port=0)),
        sessions=sessions,
        **blissng_server_options,
    ) as server:
        yield server


@pytest.fixture
async def blissng_client(blissng_server: Server) -> AsyncIterator[Client]:
    """A client of ``blissng_server``'s API (``await client.run(session, "ascan(...)")``)."""
    from blissng.client import Client

    async with Client.from_connection_file(blissng_server.state_dir / "web.json") as client:
        yield client
