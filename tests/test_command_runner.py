"""The session's one command runner (blissng.session.CommandRunner), without consoles: the compile
rule, output kept and forwarded, Ctrl-C of threads, sleeps and coroutines, errors per origin,
and the process-wide hooks a server installs and takes back."""

from __future__ import annotations

import getpass
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from blissng.errors import Aborted
from blissng.session._process_hooks import hooks_installed
from blissng.shell import SimpleSession

pytestmark = pytest.mark.anyio


class Collected:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


@pytest.fixture
async def session() -> AsyncIterator[SimpleSession]:
    async with SimpleSession("runner") as session:
        yield session


async def run(session: SimpleSession, source: str, **kwargs: object) -> object:
    cmd = session.runner.submit_source(source, **kwargs)  # type: ignore[arg-type]
    with anyio.fail_after(30):
        await cmd.wait_done()
    return cmd


async def test_the_last_expression_is_the_result_and_prints_are_kept(
    session: SimpleSession,
) -> None:
    target = Collected()
    cmd = await run(session, "print('x'); 1 + 1", output=target)
    assert (cmd.state, cmd.result, cmd.has_result, cmd.output) == ("done", 2, True, "x\n")
    assert target.text == "x\n"  # forwarded as it was printed
    cmd = await run(session, "y = 5")
    assert (cmd.has_result, cmd.result) == (False, None)
    cmd = await run(session, "import sys; print('e', file=sys.stderr); y * 2")
    assert (cmd.result, cmd.output) == (10, "e\n")
    cmd = await run(session, "import asyncio\nawait asyncio.sleep(0)\n'on the loop'")
    assert cmd.result == "on the loop"
    cmd = await run(session, "async def later():\n    return 7\nlater()")
    assert cmd.result == 7  # a coroutine result is awaited, never left unawaited
    cmd = await run(session, "!echo from a shell")
    assert cmd.output == "from a shell\n"


async def test_errors_are_kept_per_origin(session: SimpleSession) -> None:
    shown = Collected()
    cmd = await run(session, "1 / 0", origin="console-a", output=shown)
    assert cmd.state == "failed" and isinstance(cmd.error, ZeroDivisionError)
    assert shown.text == "!!! === ZeroDivisionError: division by zero === !!!\n"
    with pytest.raises(SyntaxError):
        session.runner.submit_source("1 +", origin="console-b")
    mine = await run(session, "last_error()", origin="console-a")
    assert 'File "<stdin>", line 1' in mine.output and "ZeroDivisionError" in mine.output
    assert "anyio" not in mine.output  # the runner's own frames are not shown
    other = await run(session, "last_error()", origin="console-b")
    assert "SyntaxError" in other.output and "ZeroDivisionError" not in other.output
    nobody = await run(session, "last_error()", origin="api:gui")
    assert nobody.output == "no error so far\n"


@pytest.mark.parametrize(
    "source",
    [
        "import time\ntime.sleep(60)",  # the interruptible sleep
        "while True:\n    pass",  # pure Python
        "import asyncio\nawait asyncio.sleep(60)",  # on the event loop
        "try:\n    sleep(60)\nexcept KeyboardInterrupt:\n    print('seen as KeyboardInterrupt')"
        "\n    raise",
    ],
)
async def test_ctrl_c_ends_any_command_as_cancelled(session: SimpleSession, source: str) -> None:
    cmd = session.runner.submit_source(source)
    with anyio.fail_after(10):
        while cmd.state != "running":
            await anyio.sleep(0.01)
    await anyio.sleep(0.1)  # let it get into its sleep or loop
    started = time.monotonic()
    cmd.cancel()
    with anyio.fail_after(10), pytest.raises(Aborted):
        await cmd.wait()
    assert cmd.state == "cancelled" and time.monotonic() - started < 5
    if "print" in source:
        assert cmd.output == "seen as KeyboardInterrupt\n"
    assert (await run(session, "2 * 21")).result == 42  # the session goes on


async def test_every_command_is_listed(session: SimpleSession) -> None:
    first = await run(session, "1", origin="console-a")
    running = session.runner.submit_source("sleep(30)", origin="api:gui")
    try:
        listed = {c.id: c for c in session.commands}
        assert first.id in listed and running.id in listed
        assert session.runner.get(running.id).origin == "api:gui"
    finally:
        running.cancel()
        await running.wait_done()


async def test_the_hooks_are_installed_while_a_runner_runs_and_undone() -> None:
    before = (sys.stdout, sys.stderr, sys.stdin, time.sleep, getpass.getpass)
    async with SimpleSession("a") as a, SimpleSession("b"):
        assert hooks_installed() and time.sleep is not before[3]
        cmd = await run(a, "import getpass\ngetpass.getpass()")
        assert "getpass() is not available" in str(cmd.error)
    assert not hooks_installed()
    assert (sys.stdout, sys.stderr, sys.stdin, time.sleep, getpass.getpass) == before


@pytest.mark.timeout(120)
async def test_a_process_that_started_and_stopped_a_server_has_its_streams_back(
    write_config: Any, config_dir: Any, redis_urls: Any, tmp_path: Any
) -> None:
    """Output routing, the interruptible sleep and the refusal of getpass last as long as the
    server: a process that ran one (a test, a script) gets what it had before."""
    from blissng.client import Client
    from blissng.config import Config
    from blissng.session import Server
    from blissng.web import WebOptions, web_runner
    from test_server import CONFIG, SESSIONS

    write_config("beamline.yml", CONFIG)
    write_config("server.yml", SESSIONS)
    before = (sys.stdout, sys.stderr, sys.stdin, time.sleep, getpass.getpass)
    async with Server(
        Config(config_dir),
        redis_urls,
        state_dir=tmp_path / "state",
        writer=False,
        web=web_runner(WebOptions(port=0)),
    ) as server:
        assert time.sleep is not before[3] and sys.stdout is not before[0]
        async with Client.from_connection_file(server.state_dir / "web.json") as client:
            state = await client.run("alpha", "print('routed'); import time; time.sleep(0)")
        assert state["output"] == "routed\n"
    assert (sys.stdout, sys.stderr, sys.stdin, time.sleep, getpass.getpass) == before
