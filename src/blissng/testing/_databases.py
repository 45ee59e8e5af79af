"""The test databases of the embedded Redis servers: one per test, emptied before it; a few
reserved for session-scoped helpers and never flushed."""

from __future__ import annotations

import itertools

from blissng.redisdb import DATABASES, RedisStack, RedisUrls

# Databases kept for session-scoped helpers: 0 (default) and the top few (Celery's CELERY_DB,
# ...).
RESERVED_DBS = frozenset({0, DATABASES - 1, DATABASES - 2, DATABASES - 3})
_TEST_DBS = [db for db in range(DATABASES) if db not in RESERVED_DBS]
_db_cycle = itertools.cycle(_TEST_DBS)


def clean_databases(stack: RedisStack) -> RedisUrls:
    """The next test database of each server of ``stack``, emptied (for a fixture wider than
    a test, e.g. a module's server: it keeps it until the tests that follow cycle back)."""
    import redis

    urls = stack.urls.with_db(next(_db_cycle))
    for url in (urls.settings, urls.data):
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
    return urls
