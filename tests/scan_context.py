"""A scan context backed by Redis, as a session makes for its commands, for tests that run
scan commands without a ``Session``."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

from blissng.redisdb import RedisUrls, async_client
from blissng.redisdb.settings import SettingsStore
from blissng.scans import ScanContext, ScanSaving, use_context
from blissng.scans.clients import close_shared_clients


@contextlib.asynccontextmanager
async def redis_scan_context(
    urls: RedisUrls, base_path: Path, *, session: str, collection: str
) -> AsyncIterator[ScanContext]:
    """The current ``ScanContext`` of session ``session``: scans numbered and published in
    ``urls``, saved under ``base_path/collection``, output kept in a ``StringIO``."""
    client = async_client(urls.settings)
    saving = ScanSaving(session, settings=SettingsStore(client))
    await saving.set(base_path=str(base_path), collection=collection)
    context = ScanContext(session=session, redis=urls, scan_saving=saving, output=io.StringIO())
    try:
        with use_context(context):
            yield context
    finally:
        await close_shared_clients()
        await client.aclose()
