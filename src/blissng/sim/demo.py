"""Starting the demo beamline's simulators and finding its configuration.

The code lives in the sim layer so that the ``blissng demo`` command (cli) uses it without
importing the ``demo`` package, which is data (YAML) at the top of the layers. See
:mod:`blissng.demo` for the beamline itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

from blissng.sim.addresses import env_name, register_simulators, unregister_simulators

SIMULATORS = ("motors", "scaler", "trigger", "mca", "camera", "good", "bad")


def config_dir() -> Path:
    """The demo beamline's configuration directory (data of the ``blissng.demo`` package)."""
    return Path(__file__).resolve().parent.parent / "demo" / "config"


@contextlib.asynccontextmanager
async def start_simulators(directory: str | Path) -> AsyncIterator[dict[str, str]]:
    """Start the demo's simulator processes in ``directory`` and register their URLs.

    Yields ``{simulator name: url}``; on exit the simulators stop and are unregistered.
    """
    from blissng.sim.servers import open_demo_simulators

    async with open_demo_simulators(Path(directory)) as demo:
        urls = dict(demo.urls)
        register_simulators(urls)
        try:
            yield urls
        finally:
            unregister_simulators(list(urls))


@contextlib.contextmanager
def run_simulators(directory: str | Path) -> Iterator[dict[str, str]]:
    """Synchronous twin of :func:`start_simulators` (for a main thread before the event loop
    starts, or a pytest session fixture)."""
    from blissng.sim.servers import start_demo_simulators

    with start_demo_simulators(Path(directory)) as demo:
        urls = dict(demo.urls)
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
    "config_dir",
    "run_simulators",
    "simulator_environment",
    "start_simulators",
]
