"""One implementation of a command, callable with ``await`` on the loop and blocking from a
worker thread; cancellation of the thread's host cancels the command."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
import pytest

from blissng.scans.bridge import (
    CommandCalledWithoutLoop,
    CommandCancelled,
    command,
    forget_event_loop,
    use_event_loop,
)
from blissng.scans.context import ScanContext, current_context, use_context

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
    assert outcome and isinstance(outcome[0], CommandCancelled)


async def test_foreign_thread_uses_the_registered_loop() -> None:
    results: list[object] = []

    def foreign() -> None:
        try:
            results.append(where_am_i(1)[0])
        except Exception as exc:
            results.append(exc)

    use_event_loop()
    try:
        thread = threading.Thread(target=foreign)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
    finally:
        forget_event_loop()
    assert results == [2]


def test_no_loop_at_all_says_what_to_do() -> None:
    with pytest.raises(CommandCalledWithoutLoop, match="await"):
        where_am_i(1)
