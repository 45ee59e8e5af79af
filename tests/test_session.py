"""Session: objects from the configuration, namespace, setup script, persistent scan numbering
and active measurement group, commands owned by the session (run in threads or on the loop,
cancelled by Ctrl-C), output routing, and two sessions never writing the same file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from beamlines import MOCKUP_BEAMLINE
from blissng.config import Config
from blissng.errors import Aborted
from blissng.redisdb import RedisUrls, SettingsStore, async_client
from blissng.scans import MeasurementGroup, Scan, ScanSavingError, close_shared_clients
from blissng.session import Session, SessionError
from blissng.testing import wait_until

pytestmark = pytest.mark.anyio

CONFIG = (
    MOCKUP_BEAMLINE
    + """\
    - name: diode2
      nsamples: 1
- name: MG1
  class: MeasurementGroup
  counters: [$sim]
- name: MG2
  class: MeasurementGroup
  counters: [$diode]
"""
)


@pytest.fixture
def config(write_config, config_dir, redis_urls: RedisUrls) -> Any:
    write_config("beamline.yml", CONFIG)
    return config_dir


@pytest.fixture
async def settings(redis_urls: RedisUrls) -> Any:
    client = async_client(redis_urls.settings)
    try:
        yield SettingsStore(client)
    finally:
        await client.aclose()
        await close_shared_clients()


def session(name: str, config_dir: Path, settings: SettingsStore, urls: RedisUrls,
            tmp_path: Path, **kw: Any) -> Session:  # fmt: skip
    return Session(
        name,
        config=Config(config_dir, settings=settings),
        redis=urls,
        scan_saving={"base_path": str(tmp_path / "data")},
        **kw,
    )


async def test_namespace_objects_and_measurement_groups(config, settings, redis_urls, tmp_path):
    async with session("s1", config, settings, redis_urls, tmp_path) as s:
        ns = s.namespace
        for name in ("ascan", "dscan", "ct", "mv", "umv", "wa", "wm", "cen", "goto_peak",
                     "SCAN_SAVING", "ACTIVE_MG", "newdataset", "m1", "sim", "MG1"):  # fmt: skip
            assert name in ns, name
        assert [m.name for m in s.motors] == ["m1", "m2"]
        assert ns["ACTIVE_MG"] is ns["MG1"] and isinstance(ns["MG1"], MeasurementGroup)
        assert not s.errors and s.started
        # A scan without counters counts the active group.
        scan = await s.execute("ascan(m1, 0, 2, 4, 0)")
        assert isinstance(scan, Scan) and scan.state == "done"
        assert set(scan.channels) >= {"sim:diode", "sim:diode2"}
        assert s.last_scan is scan and ns["SCANS"][-1] is scan
        assert await s.execute("peak()") == 1.0
        assert "Finished: 5/5" in s.output.history()
        summary = s.summary()
        assert summary["active_mg"] == "MG1" and summary["motors"] == ["m1", "m2"]
        assert summary["last_scan"]["number"] == scan.number and summary["errors"] == {}
        assert summary["scan_saving"]["filename"] == s.scan_saving.filename


async def test_scan_numbers_and_active_group_persist(config, settings, redis_urls, tmp_path):
    async with session("s1", config, settings, redis_urls, tmp_path) as s:
        assert (await s.execute("ct(0, sim)")).number == 1
        assert (await s.execute("await ct(0, sim)")).number == 2  # async at the prompt
        await s.execute("set_active_mg('MG2')")
        await s.execute("MG2.disable('diode')")
    async with session("s1", config, settings, redis_urls, tmp_path) as s:
        assert (await s.execute("ct(0, sim)")).number == 3
        assert s.active_mg is s.namespace["MG2"] and s.namespace["ACTIVE_MG"].name == "MG2"
        assert s.active_mg.disabled == ["sim:diode"]
        with pytest.raises(SessionError, match="no measurement group 'MG9'"):
            await s.set_active_mg("MG9")
    async with session("s2", config, settings, redis_urls, tmp_path) as other:
        assert (await other.execute("ct(0, sim)")).number == 1


async def test_setup_script_runs_and_its_errors_are_reported(config, settings, redis_urls,
                                                            tmp_path):  # fmt: skip
    setup = tmp_path / "setup.py"
    setup.write_text("mv(m1, 2)\nALIGNED = wa()['m1']\n")
    async with session("s1", config, settings, redis_urls, tmp_path, setup_file=setup) as s:
        assert s.setup_error is None
        assert s.namespace["ALIGNED"] == 2 and s.namespace["m1"].position == 2
    bad = "x = 1\nraise RuntimeError('lens missing')\n"
    async with session("s1", config, settings, redis_urls, tmp_path, setup_source=bad) as s:
        assert s.setup_error == "RuntimeError: lens missing"
        assert "lens missing" in s.output.history()
        assert s.namespace["x"] == 1  # the session still works
        assert (await s.execute("1 + 1")) == 2


async def test_ctrl_c_cancels_scans_and_plain_code(config, settings, redis_urls, tmp_path):
    async with session("s1", config, settings, redis_urls, tmp_path) as s:
        cmd = s.submit_source("loopscan(100000, 0.01, sim)")
        await wait_until(
            lambda: s.last_scan is not None and s.last_scan.control.point_index >= 2,
            interval=0.005,
        )
        cmd.cancel()
        with pytest.raises(Aborted):
            with anyio.fail_after(5):
                await cmd.wait()
        assert cmd.state == "cancelled" and s.last_scan.state == "aborted"
        # Plain user code in its worker thread is interrupted too.
        cmd = s.submit_source("import time\nwhile True:\n    time.sleep(0.001)")
        await wait_until(lambda: cmd.state == "running", timeout=5, interval=0.005)
        cmd.cancel()
        with pytest.raises(Aborted):
            with anyio.fail_after(5):
                await cmd.wait()
        assert (await s.execute("2 * 21")) == 42  # the session goes on


async def test_a_command_outlives_the_console_that_typed_it(config, settings, redis_urls,
                                                           tmp_path):  # fmt: skip
    async with session("s1", config, settings, redis_urls, tmp_path) as s:
        handles: list[Any] = []

        async def console() -> None:
            handles.append(s.submit_source("loopscan(20, 0.005, sim)"))
            await handles[0].wait()

        with anyio.move_on_after(0.01):  # the console's connection drops
            await console()
        with anyio.fail_after(10):
            scan = await handles[0].wait()
        assert scan.state == "done" and len(await scan.get_data("diode")) == 20


async def test_output_goes_to_consoles_or_the_command_s_own(config, settings, redis_urls, tmp_path):
    async with session("s1", config, settings, redis_urls, tmp_path) as s:
        seen: list[str] = []
        detach = s.output.attach(seen.append)
        await s.execute("wm(m1)")
        assert "m1" in "".join(seen)
        mine: list[str] = []

        class Console:
            def write(self, text: str) -> None:
                mine.append(text)

            def flush(self) -> None:
                pass

        before = len(seen)
        await s.execute("wa()", output=Console())
        assert "Current Positions" in "".join(mine) and len(seen) == before
        detach()
        await s.execute("wa()")
        assert len(seen) == before
        late: list[str] = []
        s.output.attach(late.append, replay=True)
        assert "Current Positions" in "".join(late)


async def test_a_failing_device_does_not_stop_the_session(write_config, config_dir, settings,
                                                         redis_urls, tmp_path):  # fmt: skip
    write_config("beamline.yml", CONFIG)
    write_config(
        "broken.yml",
        """
        - name: scaler
          class: SimTcpScaler
          url: tcp://127.0.0.1:1
          timeout: 0.5
          counters:
            - name: det
        - name: typo
          class: NoSuchClass
        """,
    )
    async with session("s1", config_dir, settings, redis_urls, tmp_path, connect_timeout=2) as s:
        assert set(s.errors) == {"scaler", "typo"}
        assert "typo" in s.output.history()
        assert (await s.execute("ct(0, sim)")).state == "done"


async def test_two_sessions_never_write_the_same_file(config, settings, redis_urls, tmp_path):
    async with (
        session("s1", config, settings, redis_urls, tmp_path) as s1,
        session("s2", config, settings, redis_urls, tmp_path) as s2,
    ):
        scan = await s1.execute("ascan(m1, 0, 1, 1, 0, sim)")
        with pytest.raises(ScanSavingError, match="data set file of session 's1'"):
            await s2.execute("ascan(m1, 0, 1, 1, 0, sim)")
        assert "data set file of session 's1'" in s2.output.history()
        await s2.execute("last_error()")
        assert "Traceback" in s2.output.history()
        await s2.execute("newdataset()")
        other = await s2.execute("ascan(m1, 0, 1, 1, 0, sim)")
        assert other.path != scan.path and other.path.endswith("sample_0002.h5")
        # Not saved: no file, no claim needed.
        await s2.execute("SCAN_SAVING.dataset = '0001'")
        assert (await s2.execute("ct(0, sim)")).state == "done"


async def test_session_names_and_use_before_start_are_checked(tmp_path):
    with pytest.raises(SessionError, match="identifier"):
        Session("my session")
    s = Session("s1")
    with pytest.raises(SessionError, match="not started"):
        s.submit_source("1")
    async with s:  # no configuration, no Redis: still a working namespace
        assert (await s.execute("1 + 2")) == 3
        assert "ascan" in s.namespace and s.motors == []


@pytest.mark.timeout(90)
async def test_a_scan_s_workflow_runs_in_the_session_s_job_manager(
    config, settings, redis_urls, tmp_path
):
    async with session("s1", config, settings, redis_urls, tmp_path) as s:
        assert s.jobs is not None and "run_job" in s.namespace
        fit = "{'workflow': 'fit_peak', 'inputs': {'fit': {'y': 'sim:diode'}}}"
        scan = await s.execute(f"ascan(m1, 0, 2, 40, 0, diode, workflow={fit})")
        [job] = scan.jobs
        with anyio.fail_after(60):
            result = await job
        assert result["position"] == pytest.approx(1.0, abs=0.01)
        assert f"submitted as job {job.id}" in s.output.history()
    async with session("s1", config, settings, redis_urls, tmp_path, workflows=False) as s:
        assert s.jobs is None and "run_job" not in s.namespace
