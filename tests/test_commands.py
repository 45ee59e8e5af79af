"""The everyday commands, typed in a console of a real Session over the console websocket.

One server for the module (a real Session on a mockup beamline, its scans in the test Redis):
what is checked is what a user sees in the terminal, and what lands in Redis.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blissng.config import Config
from blissng.redisdb import RedisStack, RedisUrls
from blissng.session import Session
from blissng.testing import clean_databases, wait_until_sync
from blissng.web import ConsoleClient, ServerThread, serve_sessions, terminal_text

TOKEN = "commands-token"

BEAMLINE = """
- name: motors
  class: MockupController
  instant: true
  axes:
    - {name: m1, unit: mm, low_limit: -50, high_limit: 50}
    - {name: m2, unit: mm}
    - {name: m3}
    - {name: m4}
    - {name: m5}
- name: sim
  class: SimCounterController
  sampling_period: 0.001
  counters:
    - {name: diode, motor: $m1, center: 1.0, fwhm: 0.5, height: 100, nsamples: 1, unit: cps}
    - {name: mon, height: 0, background: 1000, nsamples: 1}
- name: sim2
  class: SimCounterController
  sampling_period: 0.001
  counters:
    - {name: diode2, motor: $m2, center: 0.5, fwhm: 0.5, height: 50, nsamples: 1}
    - {name: c1, nsamples: 1}
    - {name: c2, nsamples: 1}
    - {name: c3, nsamples: 1}
    - {name: c4, nsamples: 1}
- name: MG1
  class: MeasurementGroup
  counters: [$sim]
- name: MG2
  class: MeasurementGroup
  counters: [$sim, $sim2]
"""


@pytest.fixture(scope="module")
def beamline(
    redis_stack: RedisStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One server for the module: the session ``lab`` on the mockup beamline above."""
    base = tmp_path_factory.mktemp("commands")
    (base / "config").mkdir()
    (base / "config" / "beamline.yml").write_text(BEAMLINE)
    urls = clean_databases(redis_stack)
    session = Session(
        "lab",
        config=Config(base / "config"),
        redis=urls,
        scan_saving={"base_path": str(base / "data")},
    )
    with serve_sessions(session, token=TOKEN, directory=base, data_url=urls.data) as server:
        yield {"server": server, "session": session, "urls": urls, "base": base}


@pytest.fixture
def server(beamline: dict[str, Any]) -> ServerThread:
    return beamline["server"]


@pytest.fixture
def urls(beamline: dict[str, Any]) -> RedisUrls:
    return beamline["urls"]


def open_console(server: ServerThread, **params: Any) -> ConsoleClient:
    return ConsoleClient.open(server, "lab", token=TOKEN, **params)


def result(tab: ConsoleClient, expression: str, timeout: float = 30) -> str:
    """What the console shows as the value of ``expression`` (the ``Out [n]:`` line)."""
    out = tab.run(expression, timeout=timeout)
    found = re.search(r"Out \[\d+\]: (.*)", out)
    assert found, out
    return found.group(1).strip()


def no_error(out: str) -> str:
    assert "!!!" not in out and "Traceback" not in out, out
    return out


# ---------------------------------------------------------------------------- the display


@pytest.mark.timeout(120)
def test_a_progress_line_runs_under_the_table_and_is_erased(
    server: ServerThread, beamline: dict[str, Any]
) -> None:
    with open_console(server) as tab:
        tab.run("umv(m1, 0)", timeout=30)
        tab.mark()
        tab.type("loopscan(30, 0.05, sim)\r")
        # while the scan runs: points done, rate, elapsed and time left, on one line
        tab.expect(r"\d+/30 points  [\d.]+ points/s  elapsed [\d.]+ s  left [\d.]+ s", 30)
        tab.wait_status(busy=False, timeout=60)
        raw = tab.raw[tab._mark :]
        assert "\r\x1b[2K" in raw  # rewritten in place
        out = terminal_text(raw)
        assert "Finished: 30/30 points" in out
        assert "points/s" not in out  # erased at the end: not left on the screen
        rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s+[-\d.e]+\s", line)]
        assert [int(r.split()[0]) for r in rows] == list(range(30))
    # the session's log keeps the table, not the progress line
    log = beamline["base"] / "logs" / "lab.log"
    wait_until_sync(lambda: "Finished: 30/30 points" in log.read_text(), timeout=30)
    text = log.read_text()
    assert "points/s" not in text
    logged = text[text.rindex("loopscan(30, 0.05, sim)") :]
    assert re.search(r"^\s+29\s+[\d.]+\s+[-\d.e]+\s+1000$", logged, re.M), logged


@pytest.mark.timeout(120)
def test_a_table_wider_than_the_terminal_is_wrapped_not_cut(server: ServerThread) -> None:
    with open_console(server, cols=70) as tab:
        out = no_error(tab.run("ascan(m1, 0, 1, 2, 0, sim, sim2)", timeout=30))
        assert "2 lines per point" in out  # each column as wide as its own name
        for name in ("m1[mm]", "diode[cps]", "mon", "diode2", "c1", "c2", "c3", "c4"):
            assert name in out, name
        table = out[out.index("Scan ") : out.index("Finished")].splitlines()
        assert all(len(line) <= 70 for line in table), table
    with open_console(server, cols=200) as wide:
        out = no_error(wide.run("ascan(m1, 0, 1, 2, 0, sim, sim2)", timeout=30))
        assert "lines per point" not in out


@pytest.mark.timeout(120)
def test_ct_shows_values_with_units_grouped_by_controller(server: ServerThread) -> None:
    with open_console(server) as tab:
        tab.run("umv(m1, 1)", timeout=30)
        out = no_error(tab.run("ct(0.01, sim, sim2)", timeout=30))
        lines = out.splitlines()
        sim = lines.index("  sim")
        sim2 = lines.index("  sim2")
        assert sim < sim2
        assert re.match(r"\s+diode\[cps\] = \s+100", lines[sim + 1]), lines
        assert re.match(r"\s+mon = \s+1000", lines[sim + 2]), lines
        assert any(re.match(r"\s+diode2 = ", line) for line in lines[sim2:])


# ---------------------------------------------------------------------------- listings


@pytest.mark.timeout(120)
def test_lscnt_lsmg_lsobj_list_what_the_session_has(server: ServerThread) -> None:
    with open_console(server) as tab:
        out = no_error(tab.run("lscnt()"))
        lines = out.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("Fullname"))
        assert lines[header].split() == ["Fullname", "Shape", "Controller", "Name", "Unit"]
        rows = [line.split() for line in lines[header + 2 :] if line.strip()]
        assert ["sim:diode", "0D", "sim", "diode", "cps"] in rows
        assert ["sim:mon", "0D", "sim", "mon"] in rows
        names = [r[0] for r in rows if ":" in r[0]]
        assert names == sorted(names) and len(names) == len(set(names)) == 7
        out = no_error(tab.run("lscnt(sim2)"))
        assert "sim2:c4" in out and "sim:diode" not in out
        out = no_error(tab.run("lsmg()"))
        assert re.search(r"^ \* MG1$", out, re.M) and re.search(r"^   MG2$", out, re.M)
        out = no_error(tab.run("lsobj('m*')"))
        assert "m1  m2  m3  m4  m5  mon  motors" in out
        assert "diode" in no_error(tab.run("lsobj()"))


@pytest.mark.timeout(120)
def test_wu_and_wa_show_user_and_dial_positions(server: ServerThread) -> None:
    with open_console(server) as tab:
        tab.run("mv(m1, 1.25, m2, -2)", timeout=30)
        out = no_error(tab.run("wu()", timeout=30))
        assert "Current Positions: user" in out and "dial" not in out
        assert re.search(r"m1\[mm\]\s+m2\[mm\]\s+m3\s+m4\s+m5", out)
        assert re.search(r"1\.2500\s+-2\.0000", out)
        out = no_error(tab.run("wa()", timeout=30))
        assert "dial" in out and len(re.findall(r"1\.2500\s+-2\.0000", out)) == 2
        assert "Out [" not in out  # the table alone, as in BLISS: not the positions again
        out = no_error(tab.run("wm(m1)", timeout=30))
        assert "Current" in out and "Out [" not in out
        out = no_error(tab.run("positions = wa()", timeout=30))
        assert "Current Positions" in out and "Out [" not in out
        assert re.search(r"Out \[\d+\]: \{'m1': 1\.25, 'm2': -2\.0", tab.run("positions"))
        assert re.search(r"Out \[\d+\]: 1\.25$", tab.run("wu()['m1']", timeout=30), re.M)


# ---------------------------------------------------------------------------- scans


@pytest.mark.timeout(120)
def test_a3_to_a5_and_d3_to_d5_scans(server: ServerThread) -> None:
    with open_console(server) as tab:
        tab.run("mv(m1, 0, m2, 0, m3, 0, m4, 0, m5, 0)", timeout=30)
        out = no_error(tab.run("a3scan(m1, 0, 1, m2, 0, 2, m3, 0, 3, 2, 0, sim)", timeout=30))
        assert "Finished: 3/3 points" in out and re.search(r"^\s+2\s+1\s+2\s+3\s", out, re.M)
        out = no_error(
            tab.run("s = a5scan(m1, 0, 1, m2, 0, 1, m3, 0, 1, m4, 0, 1, m5, 1, 0, 4, 0, sim)", 30)
        )
        assert "Finished: 5/5 points" in out
        assert "[1.0, 1.0, 1.0, 1.0, 0.0]" in tab.run(
            "[float(s.get_data(m)[-1]) for m in ('m1', 'm2', 'm3', 'm4', 'm5')]"
        )
        tab.run("mv(m1, 1, m2, 2, m3, 3, m4, 4, m5, 5)", timeout=30)
        for command in (
            "d3scan(m1, -1, 1, m2, -1, 1, m3, -1, 1, 2, 0, sim)",
            "d4scan(m1, -1, 1, m2, -1, 1, m3, -1, 1, m4, -1, 1, 2, 0, sim)",
            "d5scan(m1, -1, 1, m2, -1, 1, m3, -1, 1, m4, -1, 1, m5, -1, 1, 2, 0, sim)",
        ):
            assert "Finished: 3/3 points" in no_error(tab.run(command, timeout=30))
            # relative scans return to where they started
            assert "[1.0, 2.0, 3.0, 4.0, 5.0]" in tab.run(
                "[m.position for m in (m1, m2, m3, m4, m5)]"
            )
        out = tab.run("a4scan(m1, 0, 1, m2, 0, 1, m1, 0, 1, m4, 0, 1, 2, 0, sim)")
        assert "a motor is given twice" in out


@pytest.mark.timeout(120)
def test_a_scan_beyond_the_limits_is_refused_before_anything_moves(server: ServerThread) -> None:
    """m1's limits are [-50, 50]: the scan used to run its first points, then fail at the
    first point outside them, with a partial file."""
    with open_console(server) as tab:
        tab.run("mv(m1, 0)", timeout=30)
        last_scan = "SCANS[-1].number if SCANS else 0"
        before = _value(tab.run(last_scan))
        out = tab.run("ascan(m1, 0, 100, 10, 0, sim)", timeout=30)
        assert (
            "LimitError: m1: ascan refused: it would take m1 to 100, outside its software "
            "limits [-50, 50]; nothing moved" in out
        ), out
        assert "Scan " not in out and "points" not in out  # no scan started
        assert _value(tab.run("m1.position")) == "0.0"
        assert "\nREADY (Axis is READY)\n" in tab.run("m1.state")  # as BLISS shows it
        assert _value(tab.run(last_scan)) == before
        out = tab.run("dscan(m1, -60, 1, 4, 0, sim)", timeout=30)  # relative: from 0 to -60
        assert "dscan refused: it would take m1 to -60" in out, out
        assert "Finished: 5/5 points" in no_error(tab.run("ascan(m1, -50, 50, 4, 0, sim)", 30))


def _value(out: str) -> str:
    """What a console showed as ``Out [n]: ...``."""
    shown = re.search(r"Out \[\d+\]: (.*)", out)
    assert shown is not None, out
    return shown.group(1).strip()


@pytest.mark.timeout(120)
def test_bliss_scan_keywords_are_accepted(server: ServerThread, urls: RedisUrls) -> None:
    import json

    import redis

    with open_console(server) as tab:
        tab.run("mv(m1, 0.5)", timeout=30)
        out = no_error(
            tab.run(
                "ascan(m1, 0, 1, 2, 0, sim, name='align_x', scan_type='align', "
                "save_images=False, scan_params={'speed': 1}, scan_info={'note': 'hi'}, "
                "sleep_time=None, restore_motor_positions=True, return_scan=False)",
                timeout=30,
            )
        )
        assert "Finished: 3/3 points" in out and "Out [" not in out  # return_scan=False
        assert "0.5" in tab.run("m1.position")  # restore_motor_positions=True
        scan_id = tab.run("SCANS[-1].scan_id").split("'")[1]
    client = redis.Redis.from_url(urls.data)
    try:
        document = json.loads(client.hget(f"blissng:scan:{scan_id}", "doc"))
    finally:
        client.close()
    assert document["name"] == "align_x"
    info = document["metadata"]["scan_info"]
    assert info["type"] == "align" and info["scan_params"] == {"speed": 1}
    assert info["save_images"] is False and info["note"] == "hi"
    with open_console(server) as tab:
        out = tab.run("ascan(m1, 0, 1, 2, 0, sim, scan_info=3)")
        assert "scan_info must be a dict" in out
        out = tab.run("ascan(m1, 0, 1, 2, 0, sim, speed=3)")
        assert "unknown keyword(s) speed" in out and "restore_motor_positions" in out


@pytest.mark.timeout(120)
def test_lineup_fwhm_and_goto_com(server: ServerThread) -> None:
    with open_console(server) as tab:
        tab.run("mv(m1, 0.2)", timeout=30)
        out = no_error(tab.run("lineup(m1, -1, 2, 60, 0, diode)", timeout=60))
        assert "Finished: 61/61 points" in out
        assert abs(float(result(tab, "m1.position")) - 1.0) < 0.03
        width = float(result(tab, "fwhm(diode)"))
        assert 0.4 < width < 0.6  # the simulated peak's FWHM is 0.5
        tab.run("mv(m1, 0)", timeout=30)
        no_error(tab.run("goto_com(diode)", timeout=30))
        assert abs(float(result(tab, "m1.position")) - 1.0) < 0.05
        assert "give the one counter" in tab.run("lineup(m1, -1, 1, 10, 0, 0.1)")


@pytest.mark.timeout(120)
def test_umvct_shows_the_counters_while_the_motor_moves(server: ServerThread) -> None:
    with open_console(server) as tab:
        tab.run("mv(m1, 0)", timeout=30)
        out = no_error(tab.run("umvct(m1, 1, diode, mon, count_time=0.01)", timeout=30))
        assert re.search(r"m1\[mm\]\s+diode\[cps\]\s+mon", out), out
        final = out.splitlines()[-2] if "Out [" in out else out.strip().splitlines()[-1]
        assert re.search(r"1\.0000\s+100\.\d+\s+1000\.0000", out), final
        out = no_error(tab.run("umvct(m1, 0)", timeout=30))  # the active group's counters
        assert re.search(r"m1\[mm\]\s+diode\[cps\]\s+mon", out)
        assert "limit" in tab.run("umvct(m1, 100, diode)")


# ---------------------------------------------------------------------------- data policy


@pytest.mark.timeout(120)
def test_data_policy_commands_move_the_path_and_the_redis_data_set_keys(
    server: ServerThread, urls: RedisUrls, beamline: dict[str, Any]
) -> None:
    import redis

    data = beamline["base"] / "data"
    client = redis.Redis.from_url(urls.data, decode_responses=True)
    try:
        with open_console(server) as tab:
            out = no_error(tab.run("newproposal('blc123')", timeout=30))
            root = f"{data}/blc123/sample/sample_0001"
            assert f"Data path: {root}/sample_0001.h5" in out
            no_error(tab.run("sct(0.01, sim)", timeout=30))
            dataset = client.hgetall(f"blissng:dataset:{root}")
            assert dataset["path"] == f"{root}/sample_0001.h5" and "end_time" not in dataset
            out = no_error(tab.run("newsample('kapton')", timeout=30))
            assert f"Data path: {data}/blc123/kapton/kapton_0001/kapton_0001.h5" in out
            out = no_error(tab.run("newcollection('kapton2')", timeout=30))
            assert "/blc123/kapton2/kapton2_0001/" in out
            out = no_error(tab.run("newdataset('align')", timeout=30))
            assert "/kapton2/kapton2_align/kapton2_align.h5" in out
            no_error(tab.run("sct(0.01, sim)", timeout=30))
            align_root = f"{data}/blc123/kapton2/kapton2_align"
            assert client.lrange(f"blissng:dataset:{align_root}:scans", 0, -1)
            out = no_error(tab.run("enddataset()", timeout=30))
            assert f"Data set {align_root} closed" in out
            assert float(client.hget(f"blissng:dataset:{align_root}", "end_time")) > 0
            assert "kapton2_0001" in result(tab, "SCAN_SAVING.filename")  # the next free one
            assert "inhouse/sample" in no_error(tab.run("newproposal()", timeout=30))
            out = tab.run("newsample('bad name')")
            assert "!!!" in out and "invalid collection" in out
    finally:
        client.close()


# ---------------------------------------------------------------------------- SCANS


@pytest.mark.timeout(180)
def test_scans_are_read_from_redis_and_survive_a_new_server(
    beamline: dict[str, Any], tmp_path: Path
) -> None:
    from blissng.config import Config

    with open_console(beamline["server"]) as tab:
        tab.run("mv(m1, 0)", timeout=30)
        no_error(tab.run("ascan(m1, 0, 2, 40, 0, diode)", timeout=30))
        number = int(result(tab, "SCANS[-1].number"))
        assert result(tab, "type(SCANS[-1]).__name__") == "'Scan'"  # this process ran it
    # A new server on the same Redis (a restart): SCANS still has the scan, read back.
    again = Session(
        "lab",
        config=Config(beamline["base"] / "config"),
        redis=beamline["urls"],
        scan_saving={"base_path": str(tmp_path / "data")},
    )
    with serve_sessions(
        again, token=TOKEN, directory=tmp_path, data_url=beamline["urls"].data
    ) as other:
        with open_console(other) as tab:
            assert int(result(tab, "SCANS[-1].number")) == number
            assert result(tab, "type(SCANS[-1]).__name__") == "'StoredScan'"
            assert result(tab, "SCANS[-1].state") == "'done'"
            assert result(tab, "len(SCANS[-1].get_data('diode'))") == "41"
            centre, width = eval(result(tab, "SCANS[-1].cen(diode)"))
            assert abs(centre - 1.0) < 0.05 and 0.4 < width < 0.6
            out = no_error(tab.run("SCANS"))
            assert re.search(rf"-1\s+{number}\s+done\s+ascan m1 0 2 40 0", out), out
            assert "out of" not in tab.run("SCANS[-1]")
            assert "IndexError" in tab.run("SCANS[-1000]")


# ---------------------------------------------------------------------------- plotselect


@pytest.mark.timeout(120)
def test_plotselect_and_plotinit_choose_the_curves_and_the_alignment_counter(
    server: ServerThread,
) -> None:
    with open_console(server) as tab:
        out = no_error(tab.run("plotselect(diode2)"))
        assert "Plotted counter(s): sim2:diode2" in out
        assert "not a counter" in tab.run("plotselect('nothing_like_it')")
        no_error(tab.run("plotselect(diode2)"))
        out = no_error(tab.run("plotinit(mon)"))
        assert "for the next scan: sim:mon" in out
        tab.run("mv(m1, 0, m2, 0)", timeout=30)
        no_error(tab.run("a2scan(m1, 0, 2, m2, -1, 3, 40, 0, sim, sim2)", timeout=30))
        assert result(tab, "SCANS[-1].info['metadata']['plotselect']") == "['sim:mon']"
        no_error(tab.run("a2scan(m1, 0, 2, m2, -1, 3, 40, 0, sim, sim2)", timeout=30))
        assert result(tab, "SCANS[-1].info['metadata']['plotselect']") == "['sim2:diode2']"
        # cen() with no counter aligns on the plotselected one: diode2 peaks at m2 = 0.5
        centre, _ = eval(result(tab, "cen(axis=m2)"))
        assert abs(centre - 0.5) < 0.1
        no_error(tab.run("plotselect(diode)"))
        centre, _ = eval(result(tab, "cen(axis=m1)"))
        assert abs(centre - 1.0) < 0.1
        assert "every counter" in no_error(tab.run("plotselect(None)"))


# ---------------------------------------------------------------------------- on a terminal


@pytest.mark.timeout(240)
def test_the_everyday_commands_in_blissng_shell_on_a_terminal(server: ServerThread) -> None:
    """The same commands through ``blissng shell lab`` on a real pseudo-terminal."""
    from ptys import PtyProcess

    shell = PtyProcess("lab", "--url", f"unix:{server.uds}", "--token", TOKEN)
    steps = [
        ("lscnt()", "sim2:diode2"),
        ("lsmg()", "* MG1"),
        ("lsobj('sim*')", "sim  sim2"),
        ("wu()", "Current Positions: user"),
        ("wa()", "dial"),
        ("umvct(m1, 0.5, diode)", "diode[cps]"),
        ("ct(0.01, sim)", "diode[cps] ="),
        ("loopscan(10, 0.02, sim)", "Finished: 10/10 points"),
        ("a3scan(m1, 0, 1, m2, 0, 1, m3, 0, 1, 4, 0, sim)", "Finished: 5/5 points"),
        ("a4scan(m1, 0, 1, m2, 0, 1, m3, 0, 1, m4, 0, 1, 4, 0, sim)", "Finished: 5/5 points"),
        (
            "a5scan(m1, 0, 1, m2, 0, 1, m3, 0, 1, m4, 0, 1, m5, 0, 1, 4, 0, sim)",
            "Finished: 5/5 points",
        ),
        ("d3scan(m1, -1, 1, m2, -1, 1, m3, -1, 1, 2, 0, sim)", "Finished: 3/3 points"),
        ("d4scan(m1, -1, 1, m2, -1, 1, m3, -1, 1, m4, -1, 1, 2, 0, sim)", "Finished: 3/3"),
        (
            "d5scan(m1, -1, 1, m2, -1, 1, m3, -1, 1, m4, -1, 1, m5, -1, 1, 2, 0, sim)",
            "Finished: 3/3 points",
        ),
        ("ascan(m1, 0, 2, 20, 0, sim, name='on_pty', return_scan=False)", "Finished: 21/21"),
        ("plotselect(diode)", "Plotted counter(s): sim:diode"),
        ("plotinit(mon)", "for the next scan: sim:mon"),
        ("fwhm()", "0.5"),
        ("goto_com(diode)", "m1"),
        ("lineup(m1, -1, 1, 20, 0, diode)", "Finished: 21/21 points"),
        ("newproposal('pty_proposal')", "/pty_proposal/sample/sample_0001/"),
        ("newsample('on_a_pty')", "on_a_pty_0001.h5"),
        ("newcollection('pty2')", "pty2_0001.h5"),
        ("newdataset()", "pty2_0002.h5"),
        ("sct(0, sim)", "diode[cps] ="),
        ("enddataset()", "pty2_0002 closed"),
        ("SCANS[-1].title", "sct 0"),
        ("SCANS", "lineup"),
    ]
    try:
        shell.expect("lab [1]:")
        for number, (command, expected) in enumerate(steps, start=2):
            shell.send(command + "\r")
            text = shell.expect(f"lab [{number}]:", timeout=60)
            answer = text.rsplit(f"lab [{number - 1}]:", 1)[-1]
            assert expected in answer and "!!!" not in answer, answer
        shell.send("\x04")
        assert shell.wait() == 0
    finally:
        shell.kill()
