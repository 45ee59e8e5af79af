"""Completion and signatures that wait for a pause in typing.

ptpython starts Jedi (pure Python, in a thread) on every keystroke for completions and for the
signature bar. Jedi holds the GIL for milliseconds, so on a server where many consoles and the
scans share one process, every keystroke of every tab would delay the event loop (and that
tab's own echo). Here both start only once the text has not changed for ``delay`` seconds:
the completion menu still pops up while typing, after a short pause; Tab completes at once.
"""

from __future__ import annotations

import anyio
from prompt_toolkit.buffer import Buffer

DEFAULT_DELAY = 0.12  # seconds without a keystroke before Jedi runs


def _wants_completion(buffer: Buffer) -> bool:
    before = buffer.document.text_before_cursor
    return bool(before) and (before[-1].isalnum() or before[-1] in "_.")


def pause_before_jedi(repl: object, delay: float = DEFAULT_DELAY) -> None:
    """Install the pause on a ptpython ``PythonRepl``: completion-while-typing and signature
    updates run after a pause (Tab still completes immediately)."""
    buffer: Buffer = repl.default_buffer  # type: ignore[attr-defined]
    repl.complete_while_typing = False  # type: ignore[attr-defined]
    update_signatures = repl._on_input_timeout  # type: ignore[attr-defined]
    buffer.on_text_changed.remove_handler(update_signatures)
    app = repl.app  # type: ignore[attr-defined]

    def on_text_changed(buff: Buffer) -> None:
        text = buff.text

        async def after_pause() -> None:
            await anyio.sleep(delay)
            if buff.text != text or not app.is_running:
                return  # typed on: the newer change has its own timer
            update_signatures(buff)
            if buff.complete_state is None and _wants_completion(buff):
                buff.start_completion(select_first=False)

        if app.is_running:
            app.create_background_task(after_pause())

    buffer.on_text_changed.add_handler(on_text_changed)
