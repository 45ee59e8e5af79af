"""Atomic scan numbers in Redis, for a scans layer that wants them."""

from __future__ import annotations

import redis.asyncio as aredis

from . import keys


async def allocate_scan_number(client: aredis.Redis, session: str, *, at_least: int = 1) -> int:
    """The next scan number of ``session`` (INCR, atomic across processes).

    ``at_least`` lets the caller skip numbers already used on disk (the data Redis is not
    persistent: after its restart numbering restarts from ``at_least``). Pass a client of the
    settings Redis to keep numbers across restarts.
    """
    number = await client.eval(_NEXT_NUMBER, 1, keys.scan_number_key(session), at_least)
    return int(number)


_NEXT_NUMBER = """
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if n < floor then
    redis.call('SET', KEYS[1], floor)
    n = floor
end
return n
"""
