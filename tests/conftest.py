"""Project-wide test settings. The fixtures themselves live in the blissng pytest plugin
(blissng.testing.plugin), so that users of blissng get them too."""

import os

import pytest

# prompt_toolkit asks the terminal for the cursor position and waits for the answer.
os.environ.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
