"""Fixtures of the fault suite (the tools are in ``serverkit.py``; docs/reliability.md lists
each fault, what blissng promises, and the test that shows it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serverkit import ServerProcess, start_server


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``blissng demo --headless`` shared by a module's scenarios that leave it as
    they found it."""
    yield from start_server(tmp_path_factory.mktemp("demo"), "demo", "--headless", name="demo")
