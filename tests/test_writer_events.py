"""A writer error reaches the output of the session that ran the scan, and only it."""

import anyio
import pytest
import redis.asyncio as aredis

from blissng.redisdb import start_one
from blissng.session._writer_events import report_writer_events
from blissng.writer import EVENTS_STREAM

pytestmark = pytest.mark.anyio


class Collect:
    def __init__(self) -> None:
        self.text = ""
        self.changed = anyio.Event()

    def write(self, text: str) -> int:
        self.text += text
        self.changed.set()
        return len(text)


async def test_writer_errors_reach_the_session_that_ran_the_scan(redis_urls):
    client = aredis.Redis.from_url(redis_urls.data)
    # An old event, from before the server started: not repeated.
    await client.xadd(EVENTS_STREAM, {"scan": "x-1", "session": "alice", "message": "old"})
    alice, bob = Collect(), Collect()
    outputs = {"alice": alice, "bob": bob}
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(report_writer_events, redis_urls.data, outputs.get)
            await client.xadd(
                EVENTS_STREAM,
                {"scan": "alice-7-ab", "session": "alice", "level": "error",
                 "message": "writer cannot write scan 7 to /data/x.h5: disk full"},
            )  # fmt: skip
            with anyio.fail_after(10):
                await alice.changed.wait()
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()
    assert "writer cannot write scan 7 to /data/x.h5: disk full" in alice.text
    assert "the data stays in Redis" in alice.text
    assert "old" not in alice.text and bob.text == ""


async def test_writer_events_ride_out_a_restart_of_the_data_redis(tmp_path):
    """Issue 13, finding 4: a restart of the data Redis used to end the server (this task
    raised ConnectionError into its root task group); now it reconnects and goes on."""
    server = await anyio.to_thread.run_sync(
        lambda: start_one("data", tmp_path / "redis", persistent=False)
    )
    alice = Collect()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(report_writer_events, server.url, {"alice": alice}.get)
            server.process.kill()  # a crash: connections drop, the socket stays
            await anyio.to_thread.run_sync(server.process.wait)
            await anyio.sleep(0.5)  # the follower meets the dead server and retries
            server = await anyio.to_thread.run_sync(
                lambda: start_one("data", tmp_path / "redis", persistent=False)
            )
            client = aredis.Redis.from_url(server.url)
            try:
                await client.xadd(
                    EVENTS_STREAM, {"scan": "alice-8-cd", "session": "alice", "message": "full"}
                )
            finally:
                await client.aclose()
            with anyio.fail_after(20):
                await alice.changed.wait()
            tg.cancel_scope.cancel()
    finally:
        await anyio.to_thread.run_sync(server.stop)
    assert "full" in alice.text
