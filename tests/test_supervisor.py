"""Supervised children: the writer restarted when it dies, stopped with its owner."""

import os
import signal
import subprocess
import sys
import textwrap

import anyio
import psutil
import pytest

from blissng.session._supervisor import Supervised, writer_command

pytestmark = pytest.mark.anyio


@pytest.mark.timeout(60)
async def test_writer_is_restarted_after_sigkill_and_stopped_with_its_owner(redis_urls):
    writer = Supervised("writer", writer_command(redis_urls.data))
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await writer.started.wait()
        first = writer.pid
        os.kill(first, signal.SIGKILL)
        await writer.wait_starts(2)
        assert writer.starts == 2 and writer.pid != first
        assert writer.last_exit == -signal.SIGKILL
        second = writer.pid
        tg.cancel_scope.cancel()
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == "zombie"


PARENT = textwrap.dedent(
    """
    import sys, anyio
    from blissng.session._supervisor import Supervised, writer_command

    async def main():
        writer = Supervised("writer", writer_command(sys.argv[1]))
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            await writer.started.wait()
            print(writer.pid, flush=True)

    anyio.run(main)
    """
)


@pytest.mark.timeout(60)
def test_writer_exits_when_the_server_is_killed(redis_urls):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, redis_urls.data], stdout=subprocess.PIPE, text=True
    )
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        child.wait(timeout=20)  # raises psutil.TimeoutExpired if the writer outlives it
    finally:
        parent.kill()


@pytest.mark.timeout(60)
async def test_a_child_that_keeps_dying_is_restarted_with_growing_pauses(caplog):
    """Issue 13, finding 5: the writer was restarted 54 times in 30 s, without pause."""
    child = Supervised("dier", [sys.executable, "-c", "raise SystemExit(3)"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(child.run)
        await child.started.wait()
        await anyio.sleep(3.0)  # pauses 0.5, 1, 2 s: at most 4 starts in that time
        tg.cancel_scope.cancel()
    assert 2 <= child.starts <= 4, child.starts
    assert child.last_exit == 3
    pauses = [r.getMessage() for r in caplog.records if "restarting it in" in r.getMessage()]
    assert (
        pauses[:3]
        == [
            f"dier exited with code 3; restarting it in {pause} s"
            for pause in ("0.5", "1.0", "2.0")
        ][: len(pauses[:3])]
    )


@pytest.mark.timeout(60)
async def test_a_child_that_cannot_be_started_is_retried_without_ending_its_owner(caplog):
    child = Supervised("ghost", ["/nonexistent/blissng-child"], min_backoff=0.1)
    with anyio.move_on_after(1.0):
        await child.run()  # returns only when cancelled: the spawn error is not raised
    assert child.starts == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("ghost could not be started" in m and "trying again" in m for m in messages)
