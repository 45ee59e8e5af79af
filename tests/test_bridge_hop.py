"""The worker thread -> event loop trip of blocking device calls (blissng.scans._hop): what
``anyio.from_thread.run`` guarantees, with less work per call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading

import anyio
import anyio.to_thread
import pytest

from blissng.scans._hop import fast_path_available, run_from_thread

pytestmark = pytest.mark.anyio

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


def test_the_fast_path_works_with_the_installed_anyio() -> None:
    # An anyio whose internals moved makes every call take anyio.from_thread.run (slower,
    # still correct): this test says so instead of a benchmark drifting silently.
    assert fast_path_available()


async def test_result_thread_context_and_task() -> None:
    loop_thread = threading.get_ident()

    async def where() -> tuple[int, str, str]:
        task = asyncio.current_task()
        assert task is not None
        return threading.get_ident(), marker.get(), task.get_coro().__qualname__

    def in_thread() -> tuple[int, str, str]:
        marker.set("worker")
        return run_from_thread(where)

    thread, seen, coro = await anyio.to_thread.run_sync(in_thread)
    assert (thread, seen) == (loop_thread, "worker")
    assert coro.startswith("run_from_thread")  # the fast path, not anyio's task wrapper


async def test_an_error_reaches_the_thread_with_its_type() -> None:
    async def fails() -> None:
        raise LookupError("no such axis")

    def in_thread() -> str:
        try:
            run_from_thread(fails)
        except LookupError as exc:
            return str(exc)
        return "nothing raised"

    assert await anyio.to_thread.run_sync(in_thread) == "no such axis"


async def test_the_call_is_in_the_cancel_scope_of_the_threads_host() -> None:
    started = threading.Event()
    seen: list[BaseException] = []

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    def in_thread() -> None:
        try:
            run_from_thread(forever)
        except BaseException as exc:
            seen.append(exc)

    with anyio.fail_after(20):
        with anyio.CancelScope() as host:
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, in_thread)
                await anyio.to_thread.run_sync(started.wait)
                host.cancel()
    assert host.cancelled_caught
    assert len(seen) == 1 and isinstance(seen[0], concurrent.futures.CancelledError)


def test_outside_a_worker_thread_it_says_so() -> None:
    async def nothing() -> None:
        pass

    with pytest.raises(anyio.NoEventLoopError):
        run_from_thread(nothing)
