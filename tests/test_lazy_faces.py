"""The shell's, the web's and the simulators' faces are lazy (PEP 562): a name imports its
private module when it is first asked for, so that importing the face, or taking one light name
from it, loads no console (ptpython, prompt_toolkit) and no session layer (``blissng shell``
starts fast), and a simulator server process loads none of the clients."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

FACES = ["blissng.shell", "blissng.web", "blissng.sim"]
HEAVY = ("ptpython", "prompt_toolkit", "blissng.session")


@pytest.mark.parametrize("face", FACES)
def test_every_name_of_the_face_comes_from_its_private_module(face: str):
    module = importlib.import_module(face)
    assert sorted(module._MODULES) == sorted(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        home = importlib.import_module(module._MODULES[name], face)
        assert value is getattr(home, name)
        assert home.__name__.rsplit(".", 1)[1].startswith("_")
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        module.missing  # noqa: B018


def _loaded(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has loaded after running ``code``."""
    probe = f"import sys, json\n{code}\nprint(json.dumps([m for m in {heavy} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import blissng.shell, blissng.web",
        "from blissng.web import shell_main",  # blissng shell, delegated by the cli
        "from blissng.shell import attach, RemoteShellError",  # blissng shell
        "from blissng.shell import strip_ansi, TerminalFeed, SessionLog",
    ],
)
def test_a_light_name_loads_no_console_and_no_session(code: str):
    assert _loaded(code) == []


@pytest.mark.parametrize(
    "code", ["from blissng.shell import ShellHub", "from blissng.web import create_app"]
)
def test_a_console_name_loads_the_consoles(code: str):
    assert _loaded(code) == list(HEAVY)


def test_the_session_layer_loads_no_simulator():
    """A beamline's server needs none: a background task's simulated heater imports the
    simulators' face when a configuration declares one."""
    assert _loaded("import blissng.session", ("blissng.sim",)) == []


# What the simulators' clients load (the device layer, the comm layer, pyserial).
CLIENTS = ("blissng.devices", "blissng.comm", "serial")


@pytest.mark.parametrize(
    "code",
    [
        "import blissng.sim",
        "import blissng.sim.servers.__main__",  # python -m blissng.sim.servers: a sim host
        "import blissng.sim._tango_server",  # the simulated Tango device server's process
        "import blissng.sim._epics_ioc",  # the simulated EPICS IOC's process
        "from blissng.sim import open_sim_host, standard_spec",  # a test starting a host
    ],
)
def test_a_simulator_server_loads_no_client(code: str):
    assert _loaded(code, CLIENTS) == []


def test_a_client_name_loads_the_clients():
    assert _loaded("from blissng.sim import SimSerialMotorController", CLIENTS) == list(CLIENTS)
