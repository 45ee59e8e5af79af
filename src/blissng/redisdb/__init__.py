"""Redis: the embedded servers, async connections, persistent settings."""

from .connection import async_client, text
from .server import (
    RedisError,
    RedisStack,
    RedisUrls,
    default_state_dir,
    find_redis_server,
    redis_stack,
    start_redis,
)

__all__ = [
    "RedisError",
    "RedisStack",
    "RedisUrls",
    "async_client",
    "default_state_dir",
    "find_redis_server",
    "redis_stack",
    "start_redis",
    "text",
]
