"""MCA spectra on demand over the plot websocket: a scan with a simulated MCA (a real
simulator process), typed in a console; the page asks for the last spectrum of the scan."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blissng.comm import register_simulators, unregister_simulators
from blissng.config import Config
from blissng.redisdb import RedisUrls
from blissng.session import Session
from blissng.shell import ShellHub
from blissng.web import ConsoleClient, ServerThread, WebSecurity, create_app

TOKEN = "spectra"
CONFIG = """
- name: mca
  class: SimMca
  url: sim://mca
  timeout: 10  # the simulator shares two cores with the whole suite
  nbins: 1024
"""


@pytest.fixture
def served(
    sims: Any, write_config: Any, config_dir: Path, redis_urls: RedisUrls, tmp_path: Path
) -> Iterator[ServerThread]:
    register_simulators(sims.urls)
    write_config("beamline.yml", CONFIG)
    session = Session(
        "demo",
        config=Config(config_dir),
        redis=redis_urls,
        scan_saving={"base_path": str(tmp_path / "data")},
    )
    app = create_app(
        ShellHub(log_dir=tmp_path / "logs"),
        security=WebSecurity(token=TOKEN),
        sessions=[session],
        data_url=redis_urls.data,
    )
    try:
        with ServerThread(app, uds=tmp_path / "web.sock") as server:
            yield server
    finally:
        unregister_simulators(list(sims.urls))


@pytest.mark.timeout(120)
def test_last_spectrum_of_the_scan_on_demand(served: ServerThread) -> None:
    plot = served.connect("/ws/plot/demo", token=TOKEN)
    try:
        with ConsoleClient.open(served, "demo", token=TOKEN) as tab:
            out = tab.run("loopscan(3, 0.01, mca)", timeout=60)
            assert "!!!" not in out, out
        deadline = time.monotonic() + 60
        description: dict[str, Any] = {}
        while True:
            kind, payload = json.loads(plot.recv(timeout=deadline - time.monotonic()))
            if kind == "scan":
                description = payload
            elif kind == "end":
                break
        assert description["spectra"] == ["mca:spectrum"]
        plot.send(json.dumps(["spectrum", "mca:spectrum", None]))
        kind, payload = json.loads(plot.recv(timeout=30))
        assert kind == "spectrum", payload
        assert payload["channel"] == "mca:spectrum" and payload["index"] == 2
        assert len(payload["values"]) == 1024 and sum(payload["values"]) > 0
        plot.send(json.dumps(["spectrum", "nope", None]))
        kind, payload = json.loads(plot.recv(timeout=30))
        assert kind == "error" and "no channel 'nope'" in payload
    finally:
        plot.close()


CAMERA_CONFIG = """
- name: camera
  class: SimCamera
  url: sim://camera
  timeout: 10
"""


@pytest.mark.timeout(120)
def test_last_camera_frame_on_demand(
    sims: Any, write_config: Any, config_dir: Path, redis_urls: RedisUrls, tmp_path: Path
) -> None:
    register_simulators(sims.urls)
    write_config("beamline.yml", CAMERA_CONFIG)
    session = Session(
        "cam",
        config=Config(config_dir),
        redis=redis_urls,
        scan_saving={"base_path": str(tmp_path / "data")},
    )
    app = create_app(
        ShellHub(log_dir=tmp_path / "logs"),
        security=WebSecurity(token=TOKEN),
        sessions=[session],
        data_url=redis_urls.data,
    )
    try:
        with ServerThread(app, uds=tmp_path / "web.sock") as served:
            plot = served.connect("/ws/plot/cam", token=TOKEN)
            try:
                with ConsoleClient.open(served, "cam", token=TOKEN) as tab:
                    out = tab.run("loopscan(2, 0.01, camera)", timeout=60)
                    assert "!!!" not in out, out
                deadline = time.monotonic() + 60
                while True:
                    kind, payload = json.loads(plot.recv(timeout=deadline - time.monotonic()))
                    if kind == "scan":
                        description = payload
                    elif kind == "end":
                        break
                (images,) = description["images"]
                plot.send(json.dumps(["frame", images, None]))
                kind, payload = json.loads(plot.recv(timeout=30))
                assert kind == "frame", payload
                rows, columns = payload["shape"]
                assert 0 < rows <= 256 and 0 < columns <= 256
                assert len(payload["pixels"]) == rows * columns
                assert max(payload["pixels"]) == 255 and payload["index"] == 1
            finally:
                plot.close()
    finally:
        unregister_simulators(list(sims.urls))
