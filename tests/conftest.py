"""Project-wide test settings. The fixtures themselves live in the blissng pytest plugin
(blissng.testing.plugin), so that users of blissng get them too.

``_no_process_state_left_behind`` (autouse) makes a test that leaves process-wide state behind
fail *itself*, and puts the state back, instead of breaking every later test: an event loop
still marked running in the main thread, anyio's test runner left open, a replaced signal
handler, a changed working directory, a changed ``BLISSNG_*`` environment variable.
"""

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

# prompt_toolkit asks the terminal for the cursor position and waits for the answer.
os.environ.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")
# Servers started by tests (also as subprocesses) take any free port, never the default one
# that another run, or a developer's server, may hold.
os.environ.setdefault("BLISSNG_WEB_PORT", "0")

# blissng's own suite: no hypothesis deadline (a loaded CI machine is not a failing test). Set
# here, not in the plugin, so that projects installing blissng keep their own profile.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a dev extra
    pass
else:
    settings.register_profile(
        "blissng", deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile("blissng")

_WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _blissng_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("BLISSNG_")}


def _release_anyio_runner() -> str | None:
    """anyio's pytest runner must be closed between tests (anyio_backend is function-scoped
    and no async fixture is wider): one still open belongs to a test that did not finish it."""
    from anyio import pytest_plugin

    leases = pytest_plugin._runner_leases
    if not leases and pytest_plugin._current_runner is None:
        return None
    stack = pytest_plugin._runner_stack
    pytest_plugin._runner_leases = 0
    pytest_plugin._runner_stack = pytest_plugin._current_runner = None
    if stack is not None:
        try:
            stack.close()
        except Exception as exc:
            return f"left anyio's test runner open ({leases} lease(s)); closing it: {exc!r}"
    return f"left anyio's test runner open ({leases} lease(s))"


@pytest.fixture(autouse=True)
def _no_process_state_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    cwd = os.getcwd()
    handlers = {signum: signal.getsignal(signum) for signum in _WATCHED_SIGNALS}
    environment = _blissng_environment()
    # A wider fixture may hold an event loop marked running in this thread: Playwright's sync
    # API does, as long as it is open (the session-scoped browser fixture). anyio's runner
    # then refuses to start ("Cannot run the event loop while another loop is running"), and
    # anyio.run or "no loop here" checks fail, so every test but the browser ones runs with
    # that loop hidden; it is put back after the test.
    outer = asyncio.events._get_running_loop()
    hide_outer = outer is not None and request.node.get_closest_marker("browser") is None
    if hide_outer:
        asyncio.events._set_running_loop(None)
    yield
    problems: list[str] = []
    loop = asyncio.events._get_running_loop()
    expected = None if hide_outer else outer
    if loop is not expected:
        problems.append(f"left {loop!r} marked running in the main thread (was {expected!r})")
    asyncio.events._set_running_loop(outer)
    runner = _release_anyio_runner()
    if runner:
        problems.append(runner)
    for signum, handler in handlers.items():
        if signal.getsignal(signum) is not handler:
            problems.append(f"left the {signum.name} handler {signal.getsignal(signum)!r}")
            signal.signal(signum, handler)
    if os.getcwd() != cwd:
        problems.append(f"left the working directory {os.getcwd()} (was {cwd})")
        os.chdir(cwd)
    if _blissng_environment() != environment:
        now = _blissng_environment()
        problems.append(f"changed BLISSNG_* variables: {now} (was {environment})")
        for key in set(_blissng_environment()) - set(environment):
            del os.environ[key]
        os.environ.update(environment)
    if problems:
        pytest.fail("this test " + "; ".join(problems) + " (put back for the next tests)")
