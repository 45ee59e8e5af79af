"""The devices' synchronous facade: what ``m1.read_position()`` costs in a command beside a
direct ``await``.

A command typed at a console runs in a worker thread; a device method called there blocks the
thread while its coroutine runs on the event loop (``blissng.session.synchronous``, built on
``blissng.scans.command``). Measured per call, in rounds that alternate:

- ``facade_from_thread``: ``axis.read_position()`` in a command's thread (the session's runner,
  as a console runs it), on an in-process axis (a zero-time mockup controller: the figure is
  the facade and the thread hop, not the hardware);
- baseline: ``await axis.read_position()`` on the event loop, the same coroutine;
- ``from_thread_bare``: ``anyio.from_thread.run`` of the same coroutine from a worker thread,
  without the facade (what the hop alone costs);
- ``facade_await_on_loop``: ``await axis.read_position()`` through the facade's wrapper on the
  loop (it returns the coroutine: the wrapper's own cost);
- ``facade_cpu`` / ``from_thread_bare_cpu``: the CPU time of the whole process (the worker
  thread and the event loop) per call, in the same rounds. On a loaded machine the wall time
  of a call is mostly waiting for a core (two thread wake-ups per call); the CPU time is the
  work the call itself costs, and moves much less with the load;
- ``thread_handoff_floor``: two threads passing a lock to and fro, nothing else: the least a
  trip from a thread to the loop and back can cost on this machine (two thread wake-ups).
  The target of 50 us sits at this floor on some virtual machines (49-63 us measured), so
  the facade's figure is best read as floor + its own work.

Run: ``python benchmarks/facade.py``. Target: facade_from_thread <= 50 us per call.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from _figures import figure, median, sized, spread

from blissng.devices import Axis, AxisParameters
from blissng.session import synchronous
from blissng.shell import SimpleSession
from blissng.sim import MockupController

BENCHMARK = "facade"
CALLS = sized(2000, 20)
ROUNDS = sized(7, 1)
TARGET_US = 50.0


def make_axis() -> Any:
    controller = MockupController("motors")
    axis = Axis("m1", controller, AxisParameters(name="m1"))
    controller.axes = {"m1": axis}  # type: ignore[attr-defined]
    return axis


def handoff_floor(n: int) -> float:
    """Microseconds per round trip of a lock passed between two threads, nothing else."""
    there, back = threading.Lock(), threading.Lock()
    there.acquire()
    back.acquire()

    def other() -> None:
        for _ in range(n):
            there.acquire()
            back.release()

    thread = threading.Thread(target=other)
    thread.start()
    start = time.perf_counter()
    for _ in range(n):
        there.release()
        back.acquire()
    took = time.perf_counter() - start
    thread.join()
    return took / n * 1e6


async def on_loop(call: Callable[[], Any], n: int) -> float:
    """Microseconds per ``await call()`` on the event loop."""
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n * 1e6


async def in_command(session: SimpleSession, code: Callable[[], float]) -> float:
    """Run ``code`` as a command of ``session`` (a worker thread, as a console does)."""
    cmd = session.runner.submit(code, text="benchmark")
    result: float = await cmd.wait()
    return result


async def main_async() -> None:
    raw = make_axis()  # no facade: the async API
    await raw.connect()
    axis = synchronous(make_axis())
    await axis.connect()
    read = raw.read_position

    cpu: dict[str, list[float]] = {"facade": [], "bare": []}

    def through_facade() -> float:
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(CALLS):
            axis.read_position()
        cpu["facade"].append((time.process_time() - cpu_start) / CALLS * 1e6)
        return (time.perf_counter() - start) / CALLS * 1e6

    def bare_hop() -> float:
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(CALLS):
            anyio.from_thread.run(read)
        cpu["bare"].append((time.process_time() - cpu_start) / CALLS * 1e6)
        return (time.perf_counter() - start) / CALLS * 1e6

    rounds: dict[str, list[float]] = {
        "facade": [], "direct": [], "bare": [], "wrapper": [], "floor": []
    }
    async with SimpleSession("bench") as session:
        await in_command(session, through_facade)  # warm-up: worker thread, caches
        cpu["facade"].clear()
        for _ in range(ROUNDS):
            rounds["direct"].append(await on_loop(read, CALLS))
            rounds["facade"].append(await in_command(session, through_facade))
            rounds["bare"].append(await in_command(session, bare_hop))
            rounds["wrapper"].append(await on_loop(axis.read_position, CALLS))
            rounds["floor"].append(handoff_floor(CALLS))
    direct = median(rounds["direct"])
    print(
        f"read_position() per call: facade in a command {median(rounds['facade']):.1f} us "
        f"({spread(rounds['facade'])}); await on the loop {direct:.2f} us "
        f"({spread(rounds['direct'])}); bare from_thread.run {median(rounds['bare']):.1f} us "
        f"({spread(rounds['bare'])}); await through the facade's wrapper "
        f"{median(rounds['wrapper']):.2f} us ({spread(rounds['wrapper'])}); CPU per call: "
        f"facade {median(cpu['facade']):.1f} us ({spread(cpu['facade'])}), bare "
        f"from_thread.run {median(cpu['bare']):.1f} us ({spread(cpu['bare'])})"
    )
    figure(BENCHMARK, "facade_from_thread", median(rounds["facade"]), "us/call",
           baseline=direct, target=TARGET_US)  # fmt: skip
    figure(BENCHMARK, "from_thread_bare", median(rounds["bare"]), "us/call", baseline=direct)
    figure(BENCHMARK, "facade_await_on_loop", median(rounds["wrapper"]), "us/call",
           baseline=direct)  # fmt: skip
    figure(BENCHMARK, "thread_handoff_floor", median(rounds["floor"]), "us/call",
           baseline=direct, note="two threads passing a lock: the least a hop costs")  # fmt: skip
    figure(BENCHMARK, "facade_cpu", median(cpu["facade"]), "us/call", baseline=direct,
           note="CPU of the process per call")  # fmt: skip
    figure(BENCHMARK, "from_thread_bare_cpu", median(cpu["bare"]), "us/call", baseline=direct,
           note="CPU of the process per call")  # fmt: skip


def main() -> int:
    anyio.run(main_async)
    return 0


if __name__ == "__main__":
    sys.exit(main())
