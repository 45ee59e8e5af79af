"""``sim://NAME`` addresses: configuration that names a server started at run time.

Simulated servers bind free ports and create ptys at run time, so a configuration file cannot
know their addresses. It writes ``url: sim://scaler`` (or ``tango_host: sim://tango``)
instead; the address is resolved when the device *connects* (not when the configuration is
read), in this order:

1. the addresses registered in this process with :func:`register_simulators` (what
   ``blissng.demo.start_simulators`` does after starting them);
2. the environment variable ``BLISSNG_SIM_<NAME>`` (upper case, ``-`` -> ``_``), for a
   process whose simulators were started by another one.

Any other address (``tcp://host:port``, ``serial:///dev/ttyS0``, a Tango host) is used as it
is. The registry lives in the comm layer so that every device layer above it (the simulated
instruments' clients, Tango, EPICS) resolves the same names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from blissng.errors import BlissngError

SCHEME = "sim://"

_registered: dict[str, str] = {}


class UnknownAddress(BlissngError, LookupError):
    """``sim://NAME`` names no registered server (the message says what to do)."""


def register_simulators(urls: Mapping[str, str]) -> None:
    """Make ``sim://NAME`` resolve to ``urls[NAME]`` in this process."""
    _registered.update(urls)


def unregister_simulators(names: list[str] | None = None) -> None:
    """Forget registered simulators (all of them without ``names``)."""
    if names is None:
        _registered.clear()
    for name in names or ():
        _registered.pop(name, None)


def registered_simulators() -> dict[str, str]:
    return dict(_registered)


def env_name(name: str) -> str:
    return "BLISSNG_SIM_" + name.upper().replace("-", "_")


def lookup_address(url: str) -> str:
    """The real address of ``url``; ``sim://NAME`` looked up as the module docstring says.

    Raises :class:`UnknownAddress` (a message without the device's name: callers add it).
    """
    if not url.startswith(SCHEME):
        return url
    name = url[len(SCHEME) :].strip("/")
    if name in _registered:
        return _registered[name]
    from_env = os.environ.get(env_name(name))
    if from_env:
        return from_env
    raise UnknownAddress(
        f"address {url} names simulator {name!r}, which is not running: start the "
        f"simulators (blissng.demo.start_simulators) or set {env_name(name)}"
    )
