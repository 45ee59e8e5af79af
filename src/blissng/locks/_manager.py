"""Device ownership: in-process locks and, across processes, Redis leases.

Moving a motor or acquiring with a detector holds its lock for the duration. Locks are
reentrant for one holder (a session's console, see :mod:`blissng.locks._holder`), so a scan
that locks its devices once at start moves them point after point without touching Redis.

Across processes a lock is a Redis key ``lock:<device>`` set with ``NX`` and a lease (``PX``)
that a task renews while the lock is held. A holder that dies stops renewing and its lease
expires within ``lease_time``: there are no stale locks. A holder that cannot renew (Redis
gone) cancels the block that holds the lock before its lease runs out, so a move it started
is stopped rather than continued without ownership; the block then raises :class:`LockLost`.

A lease that expired because its holder renewed it late (a loop busy for more than the
lease, on a loaded machine) and that nobody took meanwhile is taken again, with a warning:
no other holder was refused or overtaken, so aborting the scan would only lose its data.
Opening a lock by force leaves a marker (``lockforced:<device>``, for ten leases) that
tells the holder it was forced open, so it is aborted, not given the lock back.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Iterator

import anyio
import redis.asyncio as aredis
from redis.exceptions import RedisError

from blissng.errors import BlissngError
from blissng.redisdb import async_client

from ._holder import Holder, current_holder

log = logging.getLogger("blissng.locks")

POLL_INTERVAL = 0.05  # how often a waiter looks at a lease held by another process

# 1: renewed; 2: had expired, untouched, and is taken again; 0: taken by another or forced.
_RENEW = """
local value = redis.call('get', KEYS[1])
if value == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
if value == false and redis.call('exists', KEYS[2]) == 0 then
    redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 2
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class DeviceLocked(BlissngError, RuntimeError):
    """The device is held by someone else; the message names the holder."""

    def __init__(self, device: str, holder: Holder | None, waited: float) -> None:
        self.device = device
        self.holder = holder
        who = holder.describe() if holder else "another holder"
        wait = f" after waiting {waited:.1f} s" if waited else ""
        super().__init__(
            f"{device} is locked by {who}{wait}; wait for it to finish, pass a timeout to "
            f"wait, or use force_unlock({device!r}, reason) if that holder is gone"
        )


class LockLost(BlissngError, RuntimeError):
    """The lease could not be renewed (or was forced open): the holding block was aborted."""


@dataclasses.dataclass
class LockInfo:
    device: str
    holder: Holder
    since: float
    where: str  # "local" (this process) or "redis" (another process)
    expires_in: float | None = None

    def __str__(self) -> str:
        age = time.time() - self.since
        lease = f", lease {self.expires_in:.1f} s" if self.expires_in is not None else ""
        return f"{self.device:<16} {self.holder.describe()} for {age:.1f} s ({self.where}{lease})"


@dataclasses.dataclass
class _Held:
    holder: Holder
    since: float
    count: int = 1
    token: str = ""
    value: str = ""  # what the Redis key holds: compared on renew and release
    released: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    scopes: list[anyio.CancelScope] = dataclasses.field(default_factory=list)
    lost_reason: str = ""
    lease: float = 3.0  # seconds


class LockManager:
    """The locks of one process; with ``redis_url``, also leases shared with other processes."""

    def __init__(self, redis_url: str | None = None, *, lease_time: float = 3.0) -> None:
        self.redis_url = redis_url
        self.lease_time = lease_time
        self._held: dict[str, _Held] = {}
        self._client: aredis.Redis | None = None
        self._client_loop: object = None

    def _redis(self) -> aredis.Redis | None:
        if self.redis_url is None:
            return None
        import asyncio

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            timeout = max(0.2, self.lease_time / 4)
            self._client = async_client(
                self.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._client_loop = loop
        return self._client

    # ------------------------------------------------------------------ holding

    @contextlib.asynccontextmanager
    async def lock(
        self, *devices: str, timeout: float = 0.0, lease_time: float | None = None
    ) -> AsyncIterator[None]:
        """Hold ``devices`` for the block.

        ``timeout=0`` fails at once with :class:`DeviceLocked` naming the holder; a positive
        timeout waits that long. Devices already held by the same holder are re-entered.
        ``lease_time`` overrides the manager's for these leases (a server's session lock
        takes a longer one: losing it to a stalled event loop would close the session).
        """
        holder = current_holder()
        wanted = sorted(set(devices))  # one order everywhere: no deadlock between holders
        reentered = [d for d in wanted if self._is_mine(d, holder)]
        new = [d for d in wanted if d not in reentered]
        for device in reentered:
            self._held[device].count += 1
        try:
            if not new:
                yield
                return
            await self._acquire(new, holder, timeout, lease_time or self.lease_time)
            mine = [self._held[device] for device in new]
            try:
                async with anyio.create_task_group() as tg:
                    for held in mine:
                        held.scopes.append(tg.cancel_scope)
                    if self._redis() is not None:
                        tg.start_soon(self._renew, new)
                    try:
                        yield
                    finally:
                        tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # The block's own error, wrapped by the renewal's task group: give it back
                # as it was raised (callers catch Aborted, DeviceLocked...).
                if len(group.exceptions) == 1:
                    only = group.exceptions[0]
                    raise only from only.__cause__
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    await self._release(new)
            reasons = sorted({held.lost_reason for held in mine if held.lost_reason})
            if reasons:
                raise LockLost(f"lost the lock of {', '.join(new)}: {'; '.join(reasons)}")
        finally:
            for device in reentered:
                if device in self._held:
                    self._held[device].count -= 1

    def _is_mine(self, device: str, holder: Holder) -> bool:
        held = self._held.get(device)
        return held is not None and held.holder.key == holder.key

    async def _acquire(
        self, devices: list[str], holder: Holder, timeout: float, lease: float
    ) -> None:
        start = time.monotonic()
        deadline = start + timeout
        taken: list[str] = []
        try:
            for device in devices:
                # In this process: wait for the local holder's release event.
                while device in self._held:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise DeviceLocked(device, self._held[device].holder, timeout)
                    with anyio.move_on_after(remaining):
                        await self._held[device].released.wait()
                held = _Held(holder, time.time(), token=secrets.token_hex(8), lease=lease)
                self._held[device] = held
                taken.append(device)
                # Across processes: a lease in Redis.
                client = self._redis()
                if client is not None:
                    await self._acquire_lease(client, device, held, deadline, timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(taken)
            raise

    async def _acquire_lease(
        self, client: aredis.Redis, device: str, held: _Held, deadline: float, timeout: float
    ) -> None:
        value = json.dumps({"token": held.token, "since": held.since, **held.holder.to_dict()})
        held.value = value
        lease_ms = int(held.lease * 1000)
        while True:
            if await client.set(f"lock:{device}", value, nx=True, px=lease_ms):
                return
            if time.monotonic() >= deadline:
                raw = await client.get(f"lock:{device}")
                other = Holder.from_dict(json.loads(raw)) if raw else None
                raise DeviceLocked(device, other, timeout)
            await anyio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))

    async def _renew(self, devices: list[str]) -> None:
        """Renew the leases every quarter lease; abort the holder before they can expire."""
        client = self._redis()
        assert client is not None
        first = self._held.get(devices[0])
        lease = first.lease if first is not None else self.lease_time
        interval = lease / 4
        last_ok = time.monotonic()
        lease_ms = int(lease * 1000)
        while True:
            await anyio.sleep(interval)
            try:
                for device in devices:
                    held = self._held[device]
                    keys = (f"lock:{device}", f"lockforced:{device}")
                    renewed = await client.eval(_RENEW, 2, *keys, held.value, lease_ms)
                    if not renewed:
                        self._lose(device, "its Redis lease was taken or forced open")
                        return
                    if renewed == 2:
                        late = time.monotonic() - last_ok
                        log.warning(
                            "lease of %s renewed %.1f s late (lease %.1f s): it had expired, "
                            "nobody took it, %s holds it again (the event loop was busy)",
                            device,
                            late,
                            lease,
                            held.holder.describe(),
                        )
                last_ok = time.monotonic()
            except (RedisError, OSError) as exc:
                # Give up while a full renewal interval of the lease is still left.
                if time.monotonic() - last_ok > lease - 2 * interval:
                    for device in devices:
                        self._lose(device, f"cannot renew its Redis lease ({exc})")
                    return

    def _lose(self, device: str, reason: str) -> None:
        held = self._held.get(device)
        if held is None:
            return
        held.lost_reason = reason
        log.error("lock of %s lost by %s: %s", device, held.holder.describe(), reason)
        for scope in held.scopes:
            scope.cancel()

    async def _release(self, devices: Iterable[str]) -> None:
        client = self._redis()
        for device in devices:
            held = self._held.pop(device, None)
            if held is None:
                continue
            held.released.set()
            if client is not None and not held.lost_reason:
                with contextlib.suppress(RedisError, OSError), anyio.move_on_after(1.0):
                    await client.eval(_RELEASE, 1, f"lock:{device}", held.value)

    # ------------------------------------------------------------------ inspection

    async def list_locks(self) -> list[LockInfo]:
        """Locks held in this process, then leases held by other processes."""
        infos = [
            LockInfo(device, held.holder, held.since, "local")
            for device, held in sorted(self._held.items())
        ]
        client = self._redis()
        if client is not None:
            mine = {held.token for held in self._held.values()}
            async for key in client.scan_iter(match="lock:*", count=500):
                raw, ttl = await client.get(key), await client.pttl(key)
                if raw is None:
                    continue
                data = json.loads(raw)
                if data.get("token") in mine:
                    continue
                device = key.decode().removeprefix("lock:")
                infos.append(
                    LockInfo(
                        device,
                        Holder.from_dict(data),
                        float(data.get("since", 0.0)),
                        "redis",
                        ttl / 1000 if ttl and ttl > 0 else None,
                    )
                )
        return infos

    async def force_unlock(self, device: str, reason: str) -> bool:
        """Open a lock whatever holds it; the holder's block is aborted. Logged."""
        if not reason:
            raise ValueError("force_unlock needs a reason; it is logged")
        found = False
        if device in self._held:
            found = True
            self._lose(device, f"forced open: {reason}")
            held = self._held.pop(device)
            held.released.set()
        client = self._redis()
        if client is not None:
            marker_ms = int(self.lease_time * 10_000)  # longer than any holder renews late
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(f"lock:{device}")
                pipe.set(f"lockforced:{device}", reason, px=marker_ms)
                deleted, _ = await pipe.execute()
            found = bool(deleted) or found
        log.warning(
            "force_unlock(%s): %s (%s)", device, reason, "was held" if found else "was free"
        )
        return found


# How long a device lock taken without an explicit timeout waits (0: fail at once). Set
# around a command with :func:`waiting_for_locks`; it travels to the tasks and threads the
# command starts, as the holder does.
_lock_timeout: contextvars.ContextVar[float] = contextvars.ContextVar(
    "blissng_lock_timeout", default=0.0
)


def lock_timeout() -> float:
    """The current wait for busy devices (seconds; 0 = fail fast)."""
    return _lock_timeout.get()


@contextlib.contextmanager
def waiting_for_locks(seconds: float) -> Iterator[float]:
    """``with waiting_for_locks(30): ascan(...)``: wait up to 30 s for busy devices instead of
    failing at once (the default) when the block's commands take their locks."""
    if seconds < 0:
        raise ValueError(f"waiting_for_locks: seconds must be >= 0, got {seconds}")
    token = _lock_timeout.set(float(seconds))
    try:
        yield seconds
    finally:
        _lock_timeout.reset(token)
