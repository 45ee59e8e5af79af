"""Data set keys (docs/data-model.md, "Data set keys"): the publisher creates them with a
data set's first scan; ``enddataset()`` closes one."""

from __future__ import annotations

import time

import redis.asyncio as aredis

from . import _keys as keys

# Set end_time only on an existing hash (in one step: a scan creating it meanwhile is kept).
_CLOSE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'end_time', ARGV[1])
    return 1
end
return 0
"""


async def close_dataset(redis: aredis.Redis, dataset: str) -> bool:
    """Mark ``dataset`` closed (``end_time``, epoch s) in its hash; False when it has no keys
    (no scan was saved in it, or they expired)."""
    done = await redis.eval(_CLOSE, 1, keys.dataset_key(dataset), repr(time.time()))
    return bool(done)
