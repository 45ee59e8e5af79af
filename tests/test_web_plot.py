"""The plot websocket follows the user: plotselect/plotinit typed in a console, the mesh's own
grid, spectra and camera frames updated live while the scan runs (the simulated MCA and camera
are real simulator processes)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from blissng.comm import register_simulators, unregister_simulators
from blissng.config import Config
from blissng.redisdb import RedisStack
from blissng.session import Session
from blissng.testing import clean_databases
from blissng.web import ConsoleClient, ServerThread, serve_sessions
from blissng.web._plots import _jsonable

TOKEN = "plot-token"
BEAMLINE = """
- name: motors
  class: MockupController
  instant: true
  axes:
    - {name: m1}
    - {name: m2}
- name: sim
  class: SimCounterController
  sampling_period: 0.001
  counters:
    - {name: diode, motor: $m1, center: 1.0, fwhm: 0.5, height: 100, nsamples: 1}
    - {name: mon, height: 0, background: 1000, nsamples: 1}
    - {name: diode2, motor: $m2, center: 0.5, fwhm: 0.5, height: 50, nsamples: 1}
- name: mca
  class: SimMca
  url: sim://mca
  timeout: 10  # the simulator shares two cores with the whole suite
  nbins: 1024
- name: camera
  class: SimCamera
  url: sim://camera
  timeout: 10
"""


@pytest.fixture(scope="module")
def server(
    redis_stack: RedisStack, sim_host_session: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    base = tmp_path_factory.mktemp("plots")
    (base / "config").mkdir()
    (base / "config" / "beamline.yml").write_text(BEAMLINE)
    sim_host_session.reset_sync()
    register_simulators(sim_host_session.urls)
    urls = clean_databases(redis_stack)
    session = Session(
        "lab", config=Config(base / "config"), redis=urls, scan_saving={"base_path": str(base)}
    )
    try:
        with serve_sessions(session, token=TOKEN, directory=base, data_url=urls.data) as served:
            yield served
    finally:
        unregister_simulators(list(sim_host_session.urls))


class Plot:
    """The plot websocket, read message by message with deadlines."""

    def __init__(self, server: ServerThread) -> None:
        self.ws = server.connect("/ws/plot/lab", token=TOKEN)

    def next(self, timeout: float = 30) -> tuple[str, Any]:
        kind, payload = json.loads(self.ws.recv(timeout=timeout))
        return kind, payload

    def until(self, wanted: str, timeout: float = 60, after: int = 0, **match: Any) -> Any:
        """The first ``wanted`` message whose payload has the ``match`` items (and, for a
        scan, a number above ``after``)."""
        deadline = time.monotonic() + timeout
        while True:
            kind, payload = self.next(deadline - time.monotonic())
            if kind == wanted and all(payload.get(k) == v for k, v in match.items()):
                if kind != "scan" or payload["number"] > after:
                    return payload

    def send(self, *message: Any) -> None:
        self.ws.send(json.dumps(list(message)))

    def close(self) -> None:
        self.ws.close()


def console(server: ServerThread) -> ConsoleClient:
    return ConsoleClient.open(server, "lab", token=TOKEN)


def last_number(tab: ConsoleClient) -> int:
    """The number of the session's last scan (0 before the first)."""
    out = tab.run("print('LAST', SCANS[-1].number if len(SCANS) else 0)")
    assert "LAST " in out, out
    return int(out.rsplit("LAST ", 1)[1].split()[0])


@pytest.mark.timeout(120)
def test_plotselect_in_a_console_changes_the_curves_of_the_plot(server: ServerThread) -> None:
    with console(server) as tab:
        tab.run("plotselect(None)")
        plot = Plot(server)
        try:
            before = last_number(tab)
            tab.run("ascan(m1, 0, 2, 20, 0.01, sim)", timeout=30)
            scan = plot.until("scan", after=before)
            assert scan["selected"] == ["sim:diode", "sim:mon", "sim:diode2"]  # every counter
            plot.until("end")
            tab.run("plotselect(mon, 'diode2')")
            assert plot.until("select")["selected"] == ["sim:mon", "sim:diode2"]
        finally:
            plot.close()
        # a page opened now shows the selection made after the scan started
        later = Plot(server)
        try:
            assert later.until("scan")["selected"] == ["sim:mon", "sim:diode2"]
        finally:
            later.close()
        tab.run("plotselect('sim:*2')")  # a pattern
        tab.run("plotinit(diode)")  # the next scan only
        plot = Plot(server)
        try:
            before = last_number(tab)
            tab.run("ascan(m1, 0, 1, 4, 0, sim)", timeout=30)
            assert plot.until("scan", after=before)["selected"] == ["sim:diode"]
            tab.run("ascan(m1, 0, 1, 4, 0, sim)", timeout=30)
            assert plot.until("scan", after=before + 1)["selected"] == ["sim:diode2"]
        finally:
            plot.close()
        tab.run("plotselect(None)")


@pytest.mark.timeout(120)
def test_a_mesh_is_described_with_its_own_grid(server: ServerThread) -> None:
    with console(server) as tab:
        plot = Plot(server)
        try:
            before = last_number(tab)
            tab.run("dmesh(m1, -1, 1, 6, m2, -1, 1, 3, 0, sim, backnforth=True)", timeout=30)
            scan = plot.until("scan", after=before, name="dmesh")
            assert scan["mesh"] == {"shape": [4, 7], "backnforth": True}
            assert scan["motors"] == ["axis:m1", "axis:m2"] and scan["npoints"] == 28
            plot.until("end")
        finally:
            plot.close()
        # a2scan moves two motors but is no mesh
        plot = Plot(server)
        try:
            before = last_number(tab)
            tab.run("a2scan(m1, 0, 1, m2, 0, 1, 3, 0, sim)", timeout=30)
            assert plot.until("scan", after=before, name="a2scan")["mesh"] is None
        finally:
            plot.close()


@pytest.mark.timeout(180)
def test_spectra_and_frames_update_while_the_scan_runs(server: ServerThread) -> None:
    with console(server) as tab:
        for kind, channel in (("spectrum", "mca:spectrum"), ("frame", "camera:image")):
            plot = Plot(server)
            try:
                before = last_number(tab)
                started = tab.start("loopscan(30, 0.1, mca, camera)")
                scan = plot.until("scan", after=before, name="loopscan")
                assert "mca:spectrum" in scan["spectra"] and "camera:image" in scan["images"]
                plot.send(kind, channel, None)  # the last one, and the next ones
                seen: list[int] = []
                deadline = time.monotonic() + 90
                while not seen or seen[-1] != 29:
                    message, payload = plot.next(deadline - time.monotonic())
                    if message == kind:
                        assert payload["channel"] == channel
                        if kind == "spectrum":
                            assert len(payload["values"]) == 1024
                        else:
                            assert payload["shape"] and max(payload["pixels"]) == 255
                        seen.append(payload["index"])
                assert seen == sorted(seen) and len(set(seen)) >= 3, seen  # it grew live
                assert seen[0] < 25  # the first came while the scan was running
            finally:
                plot.close()
                assert "Finished: 30/30" in tab.finish(started, timeout=60)


def test_batches_are_converted_in_bulk_with_nan_as_null() -> None:
    assert _jsonable(np.array([1.0, np.nan, np.inf, 2.5])) == [1.0, None, None, 2.5]
    assert _jsonable(np.arange(3, dtype="<i4")) == [0, 1, 2]
    assert _jsonable(np.array([[1.0, np.nan]])) == [[1.0, None]]
