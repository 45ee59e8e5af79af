"""Every scan type of the demo, typed in a browser tab's console, then judged from outside:

- a plain redis-py follower (``serverkit.ScanFollower``, written from docs/data-model.md
  alone) reads every point live;
- the scan's file, opened with h5py and with nexusformat, holds the same points, and its
  default plot (root ``@default`` -> entry ``@default`` -> NXdata) is a counter against the
  scanned motor(s), a 2D map for meshes;
- after the scan's keys expired (a TTL of a few seconds, set in the session) and after the
  memory guard trimmed a scan still in Redis, ``get_data``, ``cen``, the plot websocket, the
  HTTP API and the Python client give the file's values.

One demo serves the module; the scans run once (the ``journey`` fixture) and each test looks
at them through another door.
"""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import h5py
import httpx
import numpy as np
import pytest
import redis
from nexusformat.nexus import nxload

from blissng.client import Client
from serverkit import ScanFollower, ServerProcess

pytestmark = pytest.mark.timeout(180)

# What a user types, by the kind of scan it is. Small scans: the suite must stay cheap.
SCANS: dict[str, str] = {
    "sct": "sct(0.02, diode)",
    "loopscan": "loopscan(5, 0.01, diode)",
    "timescan": "timescan(0.01, diode, npoints=5)",
    "ascan": "ascan(m1, -1, 1, 10, 0.01, diode)",
    "dscan": "dscan(m2, -1, 1, 6, 0.01, diode2)",
    "a2scan": "a2scan(m1, -1, 1, m2, 0, 2, 6, 0.01, diode)",
    "d2scan": "d2scan(m1, -0.5, 0.5, m2, -1, 1, 5, 0.01, diode)",
    "amesh": "amesh(m1, -1, 1, 3, m2, 0, 1, 2, 0.01, diode)",
    "dmesh": "dmesh(m1, -0.5, 0.5, 3, m2, -0.5, 0.5, 2, 0.01, diode, backnforth=True)",
    "lookupscan": "lookupscan([(m1, [0, 0.5, 1.5]), (m2, [1, 0, -1])], 0.01, diode)",
    "pointscan": "pointscan(m1, [-0.5, 0, 0.25, 1], 0.01, diode)",
    "mca": "ascan(m1, -1, 1, 5, 0.01, mca)",
    "camera": "ascan(m1, -1, 1, 4, 0.01, camera, diode)",
}
MESHES = {"amesh": (3, 4), "dmesh": (3, 4), "trimmed_mesh": (2, 5)}  # (slow, fast points)
# Scans run with the default TTL, for the memory guard to trim while they are in Redis.
TRIMMED: dict[str, str] = {
    "trimmed_mesh": "amesh(m1, -1, 1, 4, m2, -1, 1, 1, 0.01, diode, mca, backnforth=True)",
    "trimmed_ascan": "ascan(m2, -1.5, 1.5, 12, 0.01, diode, mca)",
}
TTL = 3  # seconds: the scans' keys expire this long after the writer wrote them


@dataclass
class Journey:
    demo: ServerProcess
    follower: ScanFollower
    numbers: dict[str, int] = field(default_factory=dict)  # kind -> scan number
    # what a plot tab showed of the session's last scan: after its TTL, after its trim
    plots: dict[str, tuple[dict[str, Any], dict[str, list[Any]]]] = field(default_factory=dict)

    def scan(self, kind: str) -> dict[str, Any]:
        """The follower's record of the scan of ``kind`` (document, points, seals)."""
        number = self.numbers[kind]
        return next(s for s in self.follower.scans.values() if s["document"]["number"] == number)

    def points(self, kind: str) -> dict[str, np.ndarray]:
        scan = self.scan(kind)
        scan_id = scan["document"]["id"]
        return {name: self.follower.points(scan_id, name) for name in scan["channels"]}


def scan_number(output: str, command: str) -> int:
    assert "!!!" not in output and "Traceback" not in output, f"{command}:\n{output}"
    found = re.search(r"^Scan (\d+) ", output, re.M)
    assert found, f"{command} showed no scan:\n{output}"
    return int(found.group(1))


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Poll ``predicate`` (a file another process writes, a thread's record) until true."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)  # written by another process or thread: nothing to wait on


def run_scans(journey: Journey, scans: dict[str, str], ttl: int) -> None:
    """Type ``scans`` in a console (their keys expire ``ttl`` s after they are written) and
    wait until the follower read each to its end."""
    follower = journey.follower
    with journey.demo.console() as tab:
        tab.run(f"session.settings.written_ttl = {ttl}")
        for kind, command in scans.items():
            journey.numbers[kind] = scan_number(tab.run(command, timeout=90), command)
    for kind in scans:
        number = journey.numbers[kind]
        wait_for(
            lambda number=number: any(
                s["document"]["number"] == number for s in follower.scans.values()
            ),
            30,
            f"the follower saw no scan {kind}",
        )
        follower.wait_closed(journey.scan(kind)["document"]["id"], timeout=60)
    assert follower.errors == []


@pytest.fixture(scope="module")
def journey(demo: ServerProcess) -> Iterator[Journey]:
    with ScanFollower(demo.redis_url("data")) as follower:
        run = Journey(demo, follower)
        run_scans(run, SCANS, TTL)
        yield run


# ---------------------------------------------------------------------------- the files


def entry_of(document: dict[str, Any]) -> str:
    return f"{document['number']}.1"


def finished_file(document: dict[str, Any]) -> Path:
    """The data set file once the writer finished the scan's entry (``end_time`` and the
    default plot are written last)."""
    path = Path(document["path"])

    def finished() -> bool:
        try:
            with h5py.File(path, "r", locking=False) as f:
                entry = f.get(entry_of(document))
                return entry is not None and "end_time" in entry and "plot" in entry
        except (OSError, KeyError):
            return False  # not yet there, or being linked

    wait_for(finished, 60, f"{document['title']}: entry {entry_of(document)} not finished")
    return path


def file_channels(path: Path, entry: str) -> dict[str, np.ndarray]:
    """The entry's measurement datasets, by the channel each one says it holds."""
    with h5py.File(path, "r", locking=False) as f:
        measurement = f[entry]["measurement"]
        return {
            str(d.attrs["channel"]): d[()]
            for d in measurement.values()
            if "channel" in d.attrs  # (not the camera's frames, linked beside their references)
        }


def default_plot(path: Path, entry: str) -> dict[str, Any]:
    """The entry's default plot as h5py reads it: signal and axes names and values."""
    with h5py.File(path, "r", locking=False) as f:
        assert f[entry].attrs["default"] == "plot"
        plot = f[entry][f[entry].attrs["default"]]
        assert plot.attrs["NX_class"] == "NXdata"
        signal = str(plot.attrs["signal"])
        axes = [str(a) for a in np.atleast_1d(plot.attrs.get("axes", []))]
        return {
            "signal": signal,
            "axes": axes,
            "values": plot[signal][()],
            "axis_values": [plot[a][()] for a in axes],
            "signal_channel": f[entry]["measurement"][signal].attrs["channel"]
            if signal in f[entry]["measurement"]
            else None,
        }


@pytest.mark.parametrize("kind", [*SCANS, *TRIMMED])
def test_the_file_holds_what_was_published_and_plots_a_counter_against_the_motors(
    journey: Journey, kind: str, request: pytest.FixtureRequest
) -> None:
    if kind in TRIMMED:
        journey = request.getfixturevalue("trimmed")
    scan = journey.scan(kind)
    document = scan["document"]
    path = finished_file(document)
    published = journey.points(kind)
    in_file = file_channels(path, entry_of(document))
    for name, points in published.items():
        assert scan["channels"][name]["end"] == len(points), name
        np.testing.assert_array_equal(in_file[name], points, err_msg=f"{kind}: {name}")
    assert len(published["timer:elapsed_time"]) == (document["npoints"] or 5)

    plot = default_plot(path, entry_of(document))
    counters = [
        name
        for name, spec in document["channels"].items()
        if spec.get("role") == "counter"
        and spec.get("kind", "data") == "data"
        and not spec.get("shape")
    ]
    motors = [m["channel"] for m in document["motors"]]
    labels = {name: spec["label"] for name, spec in document["channels"].items()}
    assert plot["signal"] in {labels[c] for c in counters}, (kind, plot)
    signal = next(c for c in counters if labels[c] == plot["signal"])
    if kind in MESHES:  # a map: rows of the slow motor, the fast motor across
        slow, fast = MESHES[kind]
        fast_channel, slow_channel = motors
        assert plot["axes"] == [labels[slow_channel], labels[fast_channel]]
        assert plot["values"].shape == (slow, fast)
        by_position = {
            (round(float(y), 6), round(float(x), 6)): float(v)
            for y, x, v in zip(
                published[slow_channel], published[fast_channel], published[signal], strict=True
            )
        }
        for row, y in enumerate(plot["axis_values"][0]):
            for column, x in enumerate(plot["axis_values"][1]):
                key = (round(float(y), 6), round(float(x), 6))
                assert float(plot["values"][row, column]) == pytest.approx(by_position[key])
    elif motors:
        assert plot["axes"] == [labels[motors[0]]], (kind, plot)
        np.testing.assert_array_equal(plot["values"], published[signal])
        np.testing.assert_array_equal(plot["axis_values"][0], published[motors[0]])
    else:  # no motor: the counter against the time the scan ran
        assert plot["axes"] == [labels["timer:elapsed_time"]], (kind, plot)
        np.testing.assert_array_equal(plot["values"], published[signal])
        np.testing.assert_array_equal(plot["axis_values"][0], published["timer:elapsed_time"])

    # nexusformat finds the same plot from the file's root, through the defaults.
    root = nxload(str(path), "r")
    plottable = root[entry_of(document)].get_default()
    assert plottable.nxsignal.nxname == plot["signal"]
    assert [a.nxname for a in plottable.nxaxes] == plot["axes"] or (
        plot["axes"] == [] and len(plottable.nxaxes) <= 1
    )
    np.testing.assert_array_equal(plottable.nxsignal.nxdata, plot["values"])
    if kind == "camera":  # the frames, in the camera's files, are reached from the scan's
        with h5py.File(path, "r", locking=False) as f:
            frames = f[entry_of(document)]["measurement"]["image"]
            assert frames.shape == (len(published["axis:m1"]), 96, 128)
            assert frames[-1].any()


# ------------------------------------------------------------- after the data left Redis


def _gone(journey: Journey, kind: str) -> bool:
    client = redis.Redis.from_url(journey.demo.redis_url("data"))
    try:
        return not client.exists(f"blissng:scan:{journey.scan(kind)['document']['id']}")
    finally:
        client.close()


def _trimmed_to_their_seals(journey: Journey, kind: str) -> bool:
    client = redis.Redis.from_url(journey.demo.redis_url("data"))
    try:
        channels = journey.scan(kind)["channels"].values()
        return all(client.xlen(channel["key"]) == 1 for channel in channels)
    finally:
        client.close()


@pytest.fixture(scope="module")
def expired(journey: Journey) -> Journey:
    """Every scan of ``SCANS`` finished in its file and gone from Redis (its TTL ran out)."""
    for kind in SCANS:
        finished_file(journey.scan(kind)["document"])
    for kind in SCANS:
        wait_for(lambda kind=kind: _gone(journey, kind), TTL + 60, f"{kind} still in Redis")
    journey.plots["expired"] = plot_points(journey)  # the last scan: the camera's
    return journey


@pytest.fixture(scope="module")
def trimmed(expired: Journey) -> Journey:
    """The ``TRIMMED`` scans (run once the others expired) written, then trimmed by the
    server's memory guard (Redis made to look nearly full: its ``maxmemory`` lowered to a
    little above what it uses)."""
    journey = expired
    run_scans(journey, TRIMMED, 300)
    for kind in TRIMMED:
        finished_file(journey.scan(kind)["document"])
    client = redis.Redis.from_url(journey.demo.redis_url("data"))
    try:
        before = client.config_get("maxmemory")["maxmemory"]

        def trimmed_by_the_guard() -> bool:
            if all(_trimmed_to_their_seals(journey, kind) for kind in TRIMMED):
                return True
            # Just above the guard's 80 % of what Redis uses now (trimming the spectra is
            # enough to go below it), set again while it has not trimmed: Redis's use moves
            # by more than the 1 % margin between two rounds of the guard (a second apart).
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", int(used / 0.81))
            return False

        try:
            wait_for(trimmed_by_the_guard, 30, f"the memory guard did not trim {list(TRIMMED)}")
            for kind in TRIMMED:
                assert not _gone(journey, kind)  # still there, only its points trimmed
            journey.plots["trimmed"] = plot_points(journey)  # the last scan: trimmed_ascan
        finally:
            client.config_set("maxmemory", before)
    finally:
        client.close()
    return journey


def console_values(journey: Journey, kind: str, channel: str) -> np.ndarray:
    """``get_data`` typed in a console (the session's scan of that number)."""
    number = journey.numbers[kind]
    with journey.demo.console() as tab:
        out = tab.run(
            f"import json; print(json.dumps([s for s in SCANS if s.number == {number}][0]"
            f".get_data({channel!r}).tolist()))",
            timeout=60,
        )
    return np.asarray(json.loads(_printed_json(out)))


def _printed_json(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert lines, out
    return lines[-1]


def api_result(journey: Journey, source: str) -> Any:
    demo = journey.demo
    with httpx.Client(
        base_url=demo.url, headers={"authorization": f"Bearer {demo.token}"}, timeout=60
    ) as http:
        reply = http.post("/api/sessions/demo/commands", json={"source": source, "timeout": 60})
        assert reply.status_code == 200, reply.text
        state = reply.json()
        assert state["state"] == "done", state
        return ast.literal_eval(state["result"])  # the result's repr, as a console shows it


def client_values(journey: Journey, kind: str) -> dict[str, np.ndarray]:
    """The scan read with the Python client (its ``blissng.data`` view)."""
    scan_id = journey.scan(kind)["document"]["id"]

    async def read() -> dict[str, np.ndarray]:
        async with Client.from_connection_file(journey.demo.connection_file) as client:
            view = await client.scan(scan_id)
            return {
                name: await channel.get(0)
                for name, channel in view.channels.items()
                if name in journey.scan(kind)["channels"]
            }

    return anyio.run(read)


def plot_points(journey: Journey) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """What a plot tab shows of the session's last scan: its description and its points."""
    with journey.demo.websocket("/ws/plot/demo") as ws:
        described: dict[str, Any] = {}
        points: dict[str, list[Any]] = {}
        deadline = time.monotonic() + 60
        while True:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message[0] == "scan":
                described, points = message[1], {}
            elif message[0] == "points":
                for name, values in message[1].items():
                    points.setdefault(name, []).extend(values)
            elif message[0] == "error":
                raise AssertionError(f"the plot says: {message[1]}")
            elif message[0] == "end":
                return described, points


def check_every_door(journey: Journey, kind: str, counter: str) -> None:
    document = journey.scan(kind)["document"]
    in_file = file_channels(Path(document["path"]), entry_of(document))
    name = next(n for n, s in document["channels"].items() if s["label"] == counter)
    np.testing.assert_array_equal(console_values(journey, kind, counter), in_file[name])
    number = journey.numbers[kind]
    by_api = api_result(
        journey, f"[s for s in SCANS if s.number == {number}][0].get_data({counter!r}).tolist()"
    )
    np.testing.assert_array_equal(np.asarray(by_api, dtype=in_file[name].dtype), in_file[name])
    by_client = client_values(journey, kind)
    for channel in journey.scan(kind)["channels"]:
        np.testing.assert_array_equal(by_client[channel], in_file[channel], err_msg=channel)


@pytest.mark.parametrize("kind", list(SCANS))
def test_after_the_ttl_every_door_reads_the_file(expired: Journey, kind: str) -> None:
    counter = "diode2" if kind == "dscan" else ("line1" if kind == "mca" else "diode")
    check_every_door(expired, kind, counter)


def test_after_the_ttl_cen_and_the_plot_read_the_file(expired: Journey) -> None:
    document = expired.scan("ascan")["document"]
    in_file = file_channels(Path(document["path"]), entry_of(document))
    # cen() of a scan whose data left Redis, typed in a console and sent to the API
    number = expired.numbers["ascan"]
    by_api = api_result(expired, f"cen(diode, scan=[s for s in SCANS if s.number == {number}][0])")
    with expired.demo.console() as tab:
        out = tab.run(f"cen(diode, scan=[s for s in SCANS if s.number == {number}][0])")
    assert "!!!" not in out, out
    assert by_api[0] == pytest.approx(_cen(in_file["axis:m1"], in_file["simct:diode"]))
    shown = re.search(r"Out \[\d+\]: \(([-\d.e+]+), ", out)
    assert shown is not None, out  # the console shows the same centre as the API
    assert float(shown.group(1)) == pytest.approx(by_api[0])
    # the plot tab opened after the TTL shows the last scan (the camera's) from its file
    camera = expired.scan("camera")["document"]
    described, points = expired.plots["expired"]
    assert described["id"] == camera["id"]
    in_file = file_channels(Path(camera["path"]), entry_of(camera))
    for channel in ("axis:m1", "simct:diode"):
        np.testing.assert_array_equal(np.asarray(points[channel]), in_file[channel])


def _cen(x: np.ndarray, y: np.ndarray) -> float:
    from blissng.scans._fit import cen_of

    return cen_of(x, y)[0]


def test_after_the_memory_guard_trimmed_every_door_reads_the_file(trimmed: Journey) -> None:
    for kind in TRIMMED:
        check_every_door(trimmed, kind, "diode")
    # the plot tab of the session's last scan (trimmed_ascan) and cen() on it
    document = trimmed.scan("trimmed_ascan")["document"]
    in_file = file_channels(Path(document["path"]), entry_of(document))
    described, points = trimmed.plots["trimmed"]
    assert described["id"] == document["id"]
    for channel in ("axis:m2", "simct:diode"):
        np.testing.assert_array_equal(np.asarray(points[channel]), in_file[channel])
    centre = api_result(trimmed, "cen(diode)")[0]
    assert centre == pytest.approx(_cen(in_file["axis:m2"], in_file["simct:diode"]))
