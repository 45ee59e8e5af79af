"""Supervised children: the writer restarted when it dies, stopped with its owner."""

import os
import signal
import subprocess
import sys
import textwrap

import anyio
import psutil
import pytest

from blissng.session.supervisor import Supervised, writer_command

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
    from blissng.session.supervisor import Supervised, writer_command

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
