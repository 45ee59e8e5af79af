"""The shell's parts without the web: the terminal feed, interrupting a worker thread, the
output router, consoles of a hub (idle reaping, the session's output shown in consoles)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from blissng.scans import ThreadInterrupter
from blissng.session._process_hooks import current_output, output_to, process_hooks
from blissng.shell import ShellHub, SimpleSession, TerminalFeed

pytestmark = pytest.mark.anyio


async def test_feed_keeps_a_bounded_scrollback_and_wakes_readers() -> None:
    feed = TerminalFeed(scrollback=100)
    feed.bind_loop()
    feed.write("first line\n")
    text, position = feed.read(0)
    assert text == "first line\r\n" and position == len(text)
    for i in range(50):
        feed.write(f"line {i}\n")
    replay, _ = feed.read(feed.replay_start())
    assert len(replay) <= 120 and replay.endswith("line 49\r\n")
    assert not replay.startswith("first")  # fell out of the scrollback

    got: list[str] = []

    async def reader(start: int) -> None:
        await feed.wait_beyond(start)
        got.append(feed.read(start)[0])

    async with anyio.create_task_group() as tg:
        start = feed.end
        tg.start_soon(reader, start)
        await anyio.wait_all_tasks_blocked()
        await anyio.to_thread.run_sync(feed.write, "from a thread\n")
    assert got == ["from a thread\r\n"]


def test_feed_reads_from_any_position_in_many_chunks() -> None:
    # One chunk per keystroke's redraw: a read from the newest ones walks back a few chunks.
    feed = TerminalFeed(scrollback=2000)
    for i in range(500):
        feed.write(f"k{i}|")
    kept, end = feed.read(0)  # from before the scrollback: its start
    assert end == feed.end and kept.endswith("k499|") and len(kept) <= 2000 + 5
    start = end - len(kept)
    for position in (start, start + 1, start + 7, end - 5, end - 4, end - 1, end):
        assert feed.read(position) == (kept[position - start :], end)


def test_interrupter_stops_pure_python_and_sleep_but_not_after_return() -> None:
    interrupter = ThreadInterrupter()
    started = threading.Event()
    outcome: list[object] = []

    def spin() -> None:
        started.set()
        while True:
            pass

    def run() -> None:
        try:
            interrupter.run(spin)
        except KeyboardInterrupt as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(10)
    assert interrupter.interrupt()
    worker.join(10)
    assert not worker.is_alive() and isinstance(outcome[0], KeyboardInterrupt)

    sleeper = ThreadInterrupter()
    t0 = time.monotonic()
    timer = threading.Timer(0.2, sleeper.interrupt)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        sleeper.run(lambda: sleeper.sleep(30))
    assert time.monotonic() - t0 < 5

    done = ThreadInterrupter()
    assert done.run(lambda: 42) == 42
    assert not done.interrupt()  # nothing runs: nothing is raised anywhere later
    time.sleep(0.01)


def test_output_router_routes_by_context_and_falls_back() -> None:
    class Target:
        def __init__(self) -> None:
            self.text = ""

        def write_output(self, text: str, *, stream: str) -> None:
            self.text += text

    one, two = Target(), Target()

    def worker(target: Target, word: str) -> None:
        with output_to(target):
            for _ in range(100):
                print(word)

    with process_hooks():
        threads = [
            threading.Thread(target=worker, args=(one, "one")),
            threading.Thread(target=worker, args=(two, "two")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert one.text == "one\n" * 100 and two.text == "two\n" * 100
        assert current_output.get() is None
        with output_to(one), pytest.raises(RuntimeError, match="standard input"):
            sys.stdin.readline()


async def test_idle_consoles_are_closed_but_busy_ones_are_kept(tmp_path: Path) -> None:
    async with (
        SimpleSession("idle") as session,
        ShellHub(log_dir=tmp_path, idle_timeout=4.0) as hub,
    ):
        consoles = await hub.add_session(session)
        busy = await consoles.open()
        busy.send_input("import time; time.sleep(30)\r")
        with anyio.fail_after(10):
            while not busy.busy:
                await anyio.sleep(0.01)
        idle = await consoles.open()
        with anyio.fail_after(20):
            await idle.closed.wait()
        assert busy.id in consoles.consoles and idle.id not in consoles.consoles
        busy.interrupt()


async def test_the_sessions_own_output_reaches_its_consoles(tmp_path: Path) -> None:
    class Output:
        def __init__(self) -> None:
            self.writers: list[object] = []

        def attach(self, writer: object) -> object:
            self.writers.append(writer)
            return lambda: self.writers.remove(writer)

    session = SimpleSession("withoutput")
    session.output = Output()  # type: ignore[assignment]
    async with session, ShellHub(log_dir=tmp_path) as hub:
        consoles = await hub.add_session(session)
        console = await consoles.open()
        await anyio.sleep(0.2)
        start = console.feed.end
        for writer in session.output.writers:  # type: ignore[attr-defined]
            writer("from the API\n")  # type: ignore[operator]
        with anyio.fail_after(10):
            while "from the API" not in console.feed.read(start)[0]:
                await console.feed.wait_beyond(console.feed.end)


async def test_consoles_share_one_set_of_code_styles_built_off_the_loop(tmp_path: Path) -> None:
    """Each ptpython REPL built a style from every Pygments style on the event loop (12-80 ms
    per tab attached); they are built once, in a worker thread, and shared."""
    async with SimpleSession("styles") as session, ShellHub(log_dir=tmp_path) as hub:
        consoles = await hub.add_session(session)
        first, second = await consoles.open(), await consoles.open()
        assert first.repl is not None and second.repl is not None
        assert first.repl.code_styles is not second.repl.code_styles  # each its own dict
        assert len(first.repl.code_styles) > 20
        for name, style in first.repl.code_styles.items():
            assert second.repl.code_styles[name] is style  # the same style objects
        first.close()
        second.close()
