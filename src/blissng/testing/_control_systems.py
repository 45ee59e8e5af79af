"""pytest fixtures for the simulated Tango server and EPICS IOC (docs/control-systems.md).

``tango_sim_session`` (session)  the simulated Tango device server process
                                 (:class:`blissng.sim.TangoSimServer`), registered as
                                 ``sim://tango`` (``tango_host: sim://tango`` in a YAML).
``tango_sim``         (test)     the same server, its devices reset before the test (restarted
                                 first if a test killed it).
``epics_ioc_session`` (session)  the simulated EPICS IOC (:class:`blissng.sim.EpicsSimIoc`:
                                 Channel Access and PV Access on 127.0.0.1, ports of its own);
                                 sets this process's ``EPICS_CA_*`` / ``EPICS_PVA_*``
                                 variables.
``epics_ioc``         (test)     the same IOC, its PVs reset before the test (restarted first
                                 if a test killed it).

Each server starts once per test session (about a second); the per-test reset gives every
test clean devices. Use them to test your own configuration against real protocol servers::

    async def test_my_motor(tango_sim, write_config, config_dir):
        write_config("m.yml", '''
            name: tm
            class: TangoMotor
            tango_name: sim/motor/1
            tango_host: sim://tango
        ''')
        ...
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blissng.comm import register_simulators, unregister_simulators
from blissng.sim import EpicsSimIoc, TangoSimServer, shared_ioc

TANGO_SIM_NAME = "tango"  # sim://tango


@pytest.fixture(scope="session")
def tango_sim_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TangoSimServer]:
    """The simulated Tango device server, for the whole test session."""
    server = TangoSimServer(tmp_path_factory.mktemp("tango"))
    server.start()
    register_simulators({TANGO_SIM_NAME: server.tango_host})
    try:
        yield server
    finally:
        unregister_simulators([TANGO_SIM_NAME])
        server.stop()


@pytest.fixture
def tango_sim(tango_sim_session: TangoSimServer) -> TangoSimServer:
    """The simulated Tango server with its devices reset for this test."""
    tango_sim_session.reset()
    register_simulators({TANGO_SIM_NAME: tango_sim_session.tango_host})
    return tango_sim_session


@pytest.fixture(scope="session")
def epics_ioc_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpicsSimIoc]:
    """The simulated EPICS IOC, for the whole test session (this process's shared IOC)."""
    with shared_ioc(tmp_path_factory.mktemp("epics")) as ioc:
        yield ioc


@pytest.fixture
def epics_ioc(epics_ioc_session: EpicsSimIoc) -> EpicsSimIoc:
    """The simulated EPICS IOC with its PVs reset for this test."""
    epics_ioc_session.reset()
    return epics_ioc_session
