"""Decoding threads: CPU-heavy work off the loop, no more threads than cores, warmed up."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from blissng.acquisition import (
    decode_in_thread,
    decode_limiter,
    decode_threads,
    warm_decode_threads,
)
from blissng.health import loop_monitor

pytestmark = pytest.mark.anyio


async def test_decoding_runs_in_threads_at_most_one_per_core() -> None:
    running = 0
    most = 0
    idents: set[int] = set()
    lock = threading.Lock()

    def decode(seconds: float) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            idents.add(threading.get_ident())
        time.sleep(seconds)  # stands for work that holds a core
        with lock:
            running -= 1
        return 1

    async with loop_monitor(threshold=0.1, interval=0.005) as monitor:
        async with anyio.create_task_group() as tg:
            for _ in range(3 * decode_threads()):
                tg.start_soon(decode_in_thread, decode, 0.03)
    assert most == decode_threads() == decode_limiter().total_tokens
    assert threading.get_ident() not in idents
    assert not any(s.culprit and s.culprit.function == "decode" for s in monitor.stats().stalls)


async def test_warm_up_starts_every_decoding_thread_at_once() -> None:
    with anyio.fail_after(10):
        await warm_decode_threads()
    assert await decode_in_thread(sum, [1, 2, 3]) == 6
    threads = threading.active_count()
    idents: set[int] = set()
    gate = threading.Barrier(decode_threads(), timeout=5)

    def meet() -> None:
        idents.add(threading.get_ident())
        gate.wait()  # only passes if every slot runs at the same time

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(decode_threads()):
                tg.start_soon(decode_in_thread, meet)
    assert len(idents) == decode_threads()
    assert threading.active_count() == threads  # no thread had to be created meanwhile
