"""A scan context backed by Redis, as a session makes for its commands, for tests that run
scan commands without a ``Session``."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from blissng.redisdb import RedisUrls, SettingsStore, async_client

if TYPE_CHECKING:
    from blissng.scans import ScanContext


@contextlib.asynccontextmanager
async def redis_scan_context(
    urls: RedisUrls, base_path: Path, *, session: str, collection: str
) -> AsyncIterator[ScanContext]:
    """The current ``ScanContext`` of session ``session``: scans numbered and published in
    ``urls``, saved under ``base_path/collection``, output kept in a ``StringIO``."""
    # Imported here: pytest loads this module with the plugin in every project that installs
    # blissng; the scan layer is loaded by the tests that use a scan context.
    from blissng.scans import ScanContext, ScanSaving, close_shared_clients, use_context

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
