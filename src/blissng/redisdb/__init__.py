"""Redis: the embedded servers, async connections, persistent settings."""

from ._connection import async_client, text
from ._embedded import (
    DATABASES,
    MIN_VERSION,
    RedisProcess,
    RedisStack,
    RedisUnavailable,
    RedisUrls,
    default_state_dir,
    find_redis_server,
    redis_stack,
    redis_version,
    start_one,
    start_redis,
    url_with_db,
)
from ._settings import ObjectSettings, SettingsError, SettingsStore

__all__ = [
    "DATABASES",
    "MIN_VERSION",
    "ObjectSettings",
    "RedisProcess",
    "RedisStack",
    "RedisUnavailable",
    "RedisUrls",
    "SettingsError",
    "SettingsStore",
    "async_client",
    "default_state_dir",
    "find_redis_server",
    "redis_stack",
    "redis_version",
    "start_one",
    "start_redis",
    "text",
    "url_with_db",
]
