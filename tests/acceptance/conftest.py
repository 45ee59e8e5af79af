"""The acceptance suite: a user's journey through one real ``blissng demo --headless`` per
module, reached only through its public doors (console websockets as a browser tab opens
them, ``blissng shell`` on a pty, the HTTP API, the Python client) and judged from outside
(a plain redis-py follower of the scans, the files opened with h5py and nexusformat).
The tools are in ``tests/serverkit.py`` (shared with the fault suite)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serverkit import ServerProcess, start_server


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``blissng demo --headless`` for the whole module (its start-up is the slow part)."""
    yield from start_server(tmp_path_factory.mktemp("journey"), "demo", "--headless", name="demo")
