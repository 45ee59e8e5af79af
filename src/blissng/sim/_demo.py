"""Starting the demo beamline's simulators and finding its configuration.

The code lives in the sim layer so that the ``blissng demo`` command (cli) uses it without
importing the ``demo`` package, which is data (YAML) at the top of the layers. See
:mod:`blissng.demo` for the beamline itself.

Beside the simulator hosts, the demo runs the simulated Tango device server (registered as
``sim://tango``) and the simulated EPICS IOC (this process's shared IOC: its ``EPICS_CA_*``
variables are set, and child processes inherit them), all started at the same time. Without
the ``tango`` or ``epics`` extra, the demo says so and runs without those devices.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import anyio

from blissng.comm import env_name, register_simulators, unregister_simulators
from blissng.threads import run_in_thread

log = logging.getLogger("blissng.demo")

SIMULATORS = ("motors", "scaler", "trigger", "mca", "camera", "good", "bad", "tango")

# What each control-system simulator needs (module -> distribution), and its extra.
EXTRAS = {
    "tango": {"tango": "pytango"},
    "epics": {"caproto": "caproto", "aioca": "aioca", "p4p": "p4p"},
}


def demo_config_dir() -> Path:
    """The demo beamline's configuration directory (data of the ``blissng.demo`` package)."""
    return Path(__file__).resolve().parent.parent / "demo" / "config"


def available_extras() -> dict[str, bool]:
    """``{"tango": True, "epics": False}``: which control systems the demo can simulate here;
    logs, for each missing one, what to install."""
    found = {}
    for extra, modules in EXTRAS.items():
        missing = [dist for module, dist in modules.items() if not importlib.util.find_spec(module)]
        found[extra] = not missing
        if missing:
            log.warning(
                "the demo's %s devices need %s (pip install 'blissng[%s]'): running without "
                "them", extra, ", ".join(missing), extra,
            )  # fmt: skip
    return found


@contextlib.asynccontextmanager
async def start_simulators(directory: str | Path) -> AsyncIterator[dict[str, str]]:
    """Start the demo's simulator processes in ``directory`` and register their URLs.

    Yields ``{simulator name: url}``; on exit the simulators stop and are unregistered.
    Every process starts at once: each spends about a second importing and binding.
    """
    from blissng.sim.servers._presets import open_demo_simulators

    directory = Path(directory)
    extras = available_extras()
    urls: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:

        async def simulators() -> None:
            demo = await stack.enter_async_context(open_demo_simulators(directory))
            urls.update(demo.urls)

        async def tango() -> None:
            from blissng.sim._tango_server import open_tango_sim

            server = await stack.enter_async_context(open_tango_sim(directory / "tango"))
            urls["tango"] = server.tango_host

        async def epics() -> None:
            from blissng.sim._epics_ioc import shared_ioc

            ioc = shared_ioc(directory / "epics")
            await run_in_thread(ioc.__enter__)
            stack.push_async_callback(run_in_thread, ioc.__exit__, None, None, None)

        async with anyio.create_task_group() as tg:
            tg.start_soon(simulators)
            if extras["tango"]:
                tg.start_soon(tango)
            if extras["epics"]:
                tg.start_soon(epics)
        register_simulators(urls)
        try:
            yield urls
        finally:
            unregister_simulators(list(urls))


@contextlib.contextmanager
def run_simulators(directory: str | Path) -> Iterator[dict[str, str]]:
    """Synchronous twin of :func:`start_simulators` (for a main thread before the event loop
    starts, or a pytest session fixture)."""
    from blissng.sim.servers._presets import start_demo_simulators

    directory = Path(directory)
    extras = available_extras()
    with contextlib.ExitStack() as stack:
        urls = dict(stack.enter_context(start_demo_simulators(directory)).urls)
        if extras["tango"]:
            from blissng.sim._tango_server import run_tango_sim

            urls["tango"] = stack.enter_context(run_tango_sim(directory / "tango")).tango_host
        if extras["epics"]:
            from blissng.sim._epics_ioc import shared_ioc

            stack.enter_context(shared_ioc(directory / "epics"))
        register_simulators(urls)
        try:
            yield urls
        finally:
            unregister_simulators(list(urls))


def simulator_environment(urls: Mapping[str, str]) -> dict[str, str]:
    """Environment variables that let another process resolve ``sim://NAME``."""
    return {env_name(name): url for name, url in urls.items()}


__all__ = [
    "SIMULATORS",
    "available_extras",
    "demo_config_dir",
    "run_simulators",
    "simulator_environment",
    "start_simulators",
]
