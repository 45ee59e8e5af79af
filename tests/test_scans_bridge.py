"""One implementation of a command, callable with ``await`` on the loop and blocking from a
worker thread; cancellation of the thread's host cancels the command."""

from __future__ import annotations

import contextvars
import threading

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from blissng.errors import Aborted
from blissng.scans import (
    CommandCalledWithoutLoop,
    ScanContext,
    command,
    current_context,
    use_context,
)

pytestmark = pytest.mark.anyio


@command
async def where_am_i(value: int) -> tuple[int, int, str]:
    await anyio.lowlevel.checkpoint()
    return value * 2, threading.get_ident(), current_context().session


async def test_await_on_the_loop() -> None:
    doubled, thread, _ = await where_am_i(21)
    assert doubled == 42
    assert thread == threading.get_ident()


async def test_blocking_from_a_worker_thread_runs_on_the_loop_with_the_context() -> None:
    loop_thread = threading.get_ident()
    with use_context(ScanContext(session="ctx_test", output=None)):
        doubled, thread, session = await anyio.to_thread.run_sync(where_am_i, 5)
    assert (doubled, thread, session) == (10, loop_thread, "ctx_test")
    assert where_am_i.aio.__name__ == "where_am_i"


async def test_cancelling_the_worker_cancels_the_command() -> None:
    started = anyio.Event()
    finished_cleanup = anyio.Event()
    outcome: list[BaseException] = []

    @command
    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            finished_cleanup.set()

    def user_code() -> None:
        try:
            forever()
        except BaseException as exc:
            outcome.append(exc)  # a console's thread wrapper catches it like this

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, user_code)
        await started.wait()
        tg.cancel_scope.cancel()
    with anyio.fail_after(5):
        await finished_cleanup.wait()
    assert outcome and isinstance(outcome[0], Aborted)


async def test_foreign_thread_uses_the_loop_of_the_context_it_carries() -> None:
    """A thread anyio did not start runs a command on the loop of the scan context it carries
    (started with the command's context); without one it is told what to do."""
    results: list[object] = []

    def foreign() -> None:
        try:
            results.append(where_am_i(1)[0])
        except CommandCalledWithoutLoop as exc:
            results.append(exc)

    with use_context(ScanContext(loop=anyio.lowlevel.current_token())):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(foreign,))
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        bare = threading.Thread(target=foreign)  # no context: no loop to run on
        bare.start()
        await anyio.to_thread.run_sync(bare.join)
    assert results[0] == 2
    assert isinstance(results[1], CommandCalledWithoutLoop)
    assert "copy_context().run" in str(results[1])


def test_no_loop_at_all_says_what_to_do() -> None:
    with pytest.raises(CommandCalledWithoutLoop, match="await"):
        where_am_i(1)


async def test_a_command_called_after_its_scope_was_cancelled_ends_at_once() -> None:
    """Ctrl-C while the thread is on its way to a command: the command's coroutine joins an
    already-cancelled scope; it must end at once, not wait for a cancellation anyio already
    delivered (it used to spin on the loop for ever)."""
    on_its_way = threading.Event()
    go_on = threading.Event()
    outcome: list[BaseException] = []

    def user_code() -> None:
        on_its_way.set()
        go_on.wait(10)
        try:
            where_am_i(1)
        except BaseException as exc:
            outcome.append(exc)

    command_scope = anyio.CancelScope()

    async def command() -> None:
        with command_scope:
            await anyio.to_thread.run_sync(user_code)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(command)
            await anyio.to_thread.run_sync(on_its_way.wait)
            command_scope.cancel()
            await anyio.wait_all_tasks_blocked()  # the cancellation was delivered
            go_on.set()
    assert outcome and isinstance(outcome[0], Aborted)
