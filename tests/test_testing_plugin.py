"""The pytest plugin as a beamline project uses it: a tiny project of its own (a configuration,
a pytest configuration naming it, tests using the fixtures), run by pytest in a subprocess
with blissng installed, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import test_server

PYPROJECT = """
[tool.pytest.ini_options]
blissng_config = "config"
blissng_session = "alpha"
"""

# The server tests' beamline: motors, counters, sessions alpha and beta, background tasks.
CONFIG, SESSIONS = test_server.CONFIG, test_server.SESSIONS

TESTS = """
from pathlib import Path

import pytest
from hypothesis import settings

from blissng.scans import ascan
from blissng.testing import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_the_plugin_leaves_the_hypothesis_profile_alone():
    # Hypothesis's own choice: "default", or "ci" where a CI variable is set (no deadline there),
    # with the settings an interpreter without the plugin has (written by the outer test).
    assert settings.get_current_profile_name() in {"default", "ci"}
    assert repr(settings()) == Path("settings_without_plugin.txt").read_text()


async def test_the_session_of_the_configuration(blissng_session, tmp_path):
    assert blissng_session.name == "alpha"
    command = blissng_session.submit_source("ascan(m1, 0, 1, 4, 0.001, da)")
    await wait_until(lambda: blissng_session.last_scan is not None, timeout=30)
    await command.wait()
    assert blissng_session.last_scan.state == "done"
    assert blissng_session.scan_saving.values.base_path == str(tmp_path / "data")


async def test_scan_commands_in_a_scan_context(scan_context, blissng_config):
    m1 = blissng_config.get("m1")
    await m1.connect()
    scan = await ascan(m1, 0, 2, 2, 0.001, blissng_config.get("da"))
    assert scan.state == "done" and scan.scan_id


async def test_a_running_server_and_its_api(blissng_server, blissng_client):
    assert set(blissng_server.sessions) == {"alpha", "beta"}
    state = await blissng_client.run("beta", "mv(m1, 2); print(m1.position)", timeout=30)
    assert state["output"].splitlines()[-1] == "2.0"
"""


@pytest.mark.timeout(240)
def test_a_beamline_project_tests_its_configuration_with_the_plugin(tmp_path: Path) -> None:
    project = tmp_path / "beamline"
    (project / "config").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "config" / "beamline.yml").write_text(textwrap.dedent(CONFIG).lstrip())
    (project / "config" / "server.yml").write_text(textwrap.dedent(SESSIONS).lstrip())
    (project / "test_beamline.py").write_text(TESTS)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    without_plugin = subprocess.run(
        [sys.executable, "-c", "from hypothesis import settings; print(repr(settings()))"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    (project / "settings_without_plugin.txt").write_text(without_plugin.stdout.strip())
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "4 passed" in run.stdout
