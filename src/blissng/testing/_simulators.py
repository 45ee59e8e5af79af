"""pytest fixtures for the simulated instruments (docs/sim-protocols.md).

``sim_host_session``   (session)  the standard sim host process: motors (pty), scaler, trigger,
                                  mca, camera, good.
``sims``               (test)     the same host, reset before the test: every simulator back to
                                  its spec, faults cleared, client connections closed.
``bad_device_session`` (session)  the bad device's own host process.
``bad_device``         (test)     the same, reset before the test.

The processes are shared by the whole session (starting one costs ~0.5 s); the per-test reset
gives each test clean state. A test that needs a private host uses ``open_sim_host(spec)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blissng.sim import SimHost, bad_device_spec, standard_spec, start_sim_host


def _alive(host: SimHost, what: str) -> SimHost:
    if not host.alive:
        raise RuntimeError(
            f"the {what} sim host (pid {host.pid}) has exited; see {host.directory}/host.log"
        )
    return host


@pytest.fixture(scope="session")
def sim_host_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHost]:
    """The standard simulators in one host process, for the whole test session."""
    with start_sim_host(standard_spec(tmp_path_factory.mktemp("sims"), seed=1234)) as host:
        yield host


@pytest.fixture
def sims(sim_host_session: SimHost) -> SimHost:
    """The standard simulators, reset to a clean state for this test."""
    host = _alive(sim_host_session, "standard")
    host.reset_sync()
    return host


@pytest.fixture(scope="session")
def bad_device_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHost]:
    """The bad device, in a process of its own, for the whole test session."""
    with start_sim_host(bad_device_spec(tmp_path_factory.mktemp("bad"))) as host:
        yield host


@pytest.fixture
def bad_device(bad_device_session: SimHost) -> SimHost:
    """The bad device host, reset (counters, stream, connections) for this test."""
    host = _alive(bad_device_session, "bad device")
    host.reset_sync()
    return host
