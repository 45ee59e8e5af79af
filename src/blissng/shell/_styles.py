"""ptpython's code styles, built once per process and off the event loop.

Each ``PythonRepl`` builds a prompt_toolkit style from every Pygments style (52 of them) when
it is created: 12-20 ms per console, 55-80 ms for the first one of a process (Pygments loads
its style modules), on the event loop that runs the scans (the loop monitor logged it when a
tab attached). The styles are immutable, so one set serves every console: it is built once,
in a worker thread, before the first console's REPL is created.
"""

from __future__ import annotations

import functools

import ptpython.python_input
from prompt_toolkit.styles import BaseStyle
from ptpython.style import get_all_code_styles

from blissng.threads import run_in_thread


@functools.cache
def _built_once() -> dict[str, BaseStyle]:
    return get_all_code_styles()


def _code_styles() -> dict[str, BaseStyle]:
    return dict(_built_once())  # a console's own dict: a REPL may add to it


async def share_code_styles() -> None:
    """Build the styles in a worker thread (once), and have every ``PythonRepl`` created
    after this take them instead of building its own."""
    if _built_once.cache_info().currsize == 0:  # the first console of the process
        await run_in_thread(_built_once, what="building ptpython's code styles")
    # ptpython internals: python_input calls the function by this module-level name.
    ptpython.python_input.get_all_code_styles = _code_styles


__all__ = ["share_code_styles"]
