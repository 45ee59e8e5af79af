"""Device locks: in-process, reentrant, Redis leases across processes, lost leases."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import anyio
import pytest
import redis

from blissng.locks import DeviceLocked, Holder, LockLost, LockManager, holding_as
from blissng.redisdb import start_one

pytestmark = pytest.mark.anyio

ALICE = Holder(session="alice", console="c1", command="ascan(m1, 0, 1, 10, 0.1)")
BOB = Holder(session="bob", console="c1", command="umv(m1, 3)")


async def test_second_holder_fails_at_once_naming_the_holder():
    manager = LockManager()
    with holding_as(ALICE):
        async with manager.lock("m1"):
            with holding_as(BOB), pytest.raises(DeviceLocked) as err:
                async with manager.lock("m1"):
                    pass
    message = str(err.value)
    assert "m1 is locked by session 'alice'" in message
    assert "ascan(m1, 0, 1, 10, 0.1)" in message and "force_unlock" in message


async def test_waiting_holder_gets_the_lock_when_released():
    manager = LockManager()
    holding = anyio.Event()
    release = anyio.Event()
    got_it = []

    async def alice():
        with holding_as(ALICE):
            async with manager.lock("m1"):
                holding.set()
                await release.wait()

    async def bob():
        await holding.wait()
        with holding_as(BOB):
            async with manager.lock("m1", timeout=10):
                got_it.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(alice)
        tg.start_soon(bob)
        await holding.wait()
        await anyio.lowlevel.checkpoint()
        assert not got_it
        released_at = time.monotonic()
        release.set()
    assert got_it and got_it[0] >= released_at


async def test_wait_times_out_with_the_time_waited():
    manager = LockManager()
    with holding_as(ALICE):
        async with manager.lock("m1"):
            with holding_as(BOB), pytest.raises(DeviceLocked, match="after waiting 0.1 s"):
                async with manager.lock("m1", timeout=0.1):
                    pass


async def test_reentrant_for_the_same_holder_and_released_after():
    manager = LockManager()
    with holding_as(ALICE):
        async with manager.lock("m1", "m2"):
            async with manager.lock("m1"):
                assert [i.device for i in await manager.list_locks()] == ["m1", "m2"]
            assert len(await manager.list_locks()) == 2
    assert await manager.list_locks() == []


async def test_force_unlock_aborts_the_holder(caplog):
    manager = LockManager()
    inside = anyio.Event()
    errors: list[BaseException] = []

    async def hold():
        with holding_as(ALICE):
            try:
                async with manager.lock("m1"):
                    inside.set()
                    await anyio.sleep_forever()
            except LockLost as exc:
                errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await inside.wait()
        assert await manager.force_unlock("m1", "stuck console")
    assert len(errors) == 1 and "forced open: stuck console" in str(errors[0])
    assert "force_unlock(m1): stuck console" in caplog.text


async def test_redis_lease_visible_to_another_manager(redis_urls):
    alice_side = LockManager(redis_urls.settings, lease_time=2.0)
    bob_side = LockManager(redis_urls.settings, lease_time=2.0)  # as if another process
    with holding_as(ALICE):
        async with alice_side.lock("m1"):
            infos = await bob_side.list_locks()
            assert [(i.device, i.holder.session, i.where) for i in infos] == [
                ("m1", "alice", "redis")
            ]
            with holding_as(BOB), pytest.raises(DeviceLocked, match="session 'alice'"):
                async with bob_side.lock("m1"):
                    pass
    with holding_as(BOB):
        async with bob_side.lock("m1"):
            pass


async def test_a_lease_renewed_late_and_taken_by_nobody_is_held_again(redis_urls, caplog):
    """A loop busy for longer than the lease (a loaded machine) renews late: the lease had
    expired, nobody took it, the holder keeps its lock and its scan (with a warning)."""
    alice_side = LockManager(redis_urls.settings, lease_time=0.4)
    bob_side = LockManager(redis_urls.settings, lease_time=0.4)
    with holding_as(ALICE):
        async with alice_side.lock("m1"):
            time.sleep(1.0)  # the loop is busy: no renewal for 2.5 leases
            await anyio.sleep(0.4)  # the renewal runs, late
            with holding_as(BOB), pytest.raises(DeviceLocked, match="session 'alice'"):
                async with bob_side.lock("m1"):
                    pass
    assert "lease of m1 renewed" in caplog.text and "nobody took it" in caplog.text


async def test_a_lease_taken_while_its_holder_was_late_aborts_the_holder(redis_urls):
    alice_side = LockManager(redis_urls.settings, lease_time=0.4)
    other_process = redis.Redis.from_url(redis_urls.settings)
    try:
        with holding_as(ALICE), pytest.raises(LockLost, match="taken or forced open"):
            async with alice_side.lock("m1"):
                time.sleep(1.0)  # the lease expires; another process takes the device
                assert other_process.set("lock:m1", '{"session": "bob"}', nx=True, px=5000)
                with anyio.fail_after(5):
                    await anyio.sleep_forever()  # aborted at the next renewal
    finally:
        other_process.close()


async def test_a_lock_forced_open_from_another_process_aborts_its_holder(redis_urls):
    # Alice's lease is short (her next renewal finds the lock forced); Bob's is not: a lease
    # of 0.4 s gave his client 0.2 s to connect, which a loaded CI run once exceeded.
    alice_side = LockManager(redis_urls.settings, lease_time=1.0)
    bob_side = LockManager(redis_urls.settings, lease_time=5.0)
    with holding_as(ALICE), pytest.raises(LockLost, match="forced open"):
        async with alice_side.lock("m1"):
            assert await bob_side.force_unlock("m1", "stuck console")
            with anyio.fail_after(5):
                await anyio.sleep_forever()  # aborted at the next renewal, not given it back
    with holding_as(BOB):
        async with bob_side.lock("m1"):
            pass


HOLD_SCRIPT = textwrap.dedent(
    """
    import sys, anyio
    from blissng.locks import LockManager, Holder, holding_as

    async def main():
        manager = LockManager(sys.argv[1], lease_time=float(sys.argv[2]))
        with holding_as(Holder(session="victim", console="c1")):
            async with manager.lock("m1"):
                print("held", flush=True)
                await anyio.sleep_forever()

    anyio.run(main)
    """
)


@pytest.mark.timeout(60)
async def test_lease_of_a_killed_process_expires(redis_urls):
    lease = 1.5
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, redis_urls.settings, str(lease)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert line.strip() == "held"
        manager = LockManager(redis_urls.settings, lease_time=lease)
        with pytest.raises(DeviceLocked, match="session 'victim'"):
            async with manager.lock("m1"):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        async with manager.lock("m1", timeout=lease * 10):
            freed_after = time.monotonic() - killed_at
        assert freed_after <= lease * 2, f"lock freed {freed_after:.2f} s after the kill"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(60)
async def test_holder_that_loses_redis_aborts_before_the_lease_expires(tmp_path):
    server = start_one("locks", tmp_path / "redis", persistent=False)
    lease = 2.0
    manager = LockManager(server.url, lease_time=lease)
    inside = anyio.Event()
    aborted_at: list[float] = []
    errors: list[BaseException] = []

    async def move():
        with holding_as(ALICE):
            try:
                async with manager.lock("m1"):
                    inside.set()
                    try:
                        await anyio.sleep_forever()
                    finally:
                        aborted_at.append(time.monotonic())
            except LockLost as exc:
                errors.append(exc)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(move)
            await inside.wait()
            await anyio.to_thread.run_sync(server.stop)
            stopped_at = time.monotonic()
        assert len(errors) == 1 and "cannot renew" in str(errors[0])
        assert aborted_at and aborted_at[0] - stopped_at < lease
    finally:
        server.stop()
