"""Completion and signatures that wait for a pause in typing; no redraw for an empty suggestion.

ptpython starts Jedi (pure Python, in a thread) on every keystroke for completions and for the
signature bar. Jedi holds the GIL for milliseconds, so on a server where many consoles and the
scans share one process, every keystroke of every tab would delay the event loop (and that
tab's own echo). Here both start only once the text has not changed for ``delay`` seconds:
the completion menu still pops up while typing, after a short pause; Tab completes at once.
"""

from __future__ import annotations

import asyncio

from prompt_toolkit.buffer import Buffer
from prompt_toolkit.utils import Event

DEFAULT_DELAY = 0.12  # seconds without a keystroke before Jedi runs


def _wants_completion(buffer: Buffer) -> bool:
    before = buffer.document.text_before_cursor
    return bool(before) and (before[-1].isalnum() or before[-1] in "_.")


def pause_before_jedi(repl: object, delay: float = DEFAULT_DELAY) -> None:
    """Install the pause on a ptpython ``PythonRepl``: completion-while-typing and signature
    updates run after a pause (Tab still completes immediately).

    One timer per console, restarted by every change: typing ``a`` then erasing it is typing,
    not a pause (a timer per keystroke that compared the text ran Jedi again whenever the
    text came back to what it was, every other key of ``a``/Backspace, in the middle of the
    typing: benchmarks/echo_latency.py), and no task is made per keystroke."""
    buffer: Buffer = repl.default_buffer  # type: ignore[attr-defined]
    repl.complete_while_typing = False  # type: ignore[attr-defined]
    # ptpython internals (pinned, decision 0006): the handler it registered, to take it off
    update_signatures = repl._on_input_timeout  # type: ignore[attr-defined]
    buffer.on_text_changed.remove_handler(update_signatures)
    app = repl.app  # type: ignore[attr-defined]
    timer: list[asyncio.TimerHandle | None] = [None]

    def after_pause() -> None:
        timer[0] = None
        if not app.is_running:
            return
        update_signatures(buffer)
        if buffer.complete_state is None and _wants_completion(buffer):
            buffer.start_completion(select_first=False)

    def on_text_changed(buff: Buffer) -> None:
        if timer[0] is not None:
            timer[0].cancel()
            timer[0] = None
        if app.is_running:
            timer[0] = asyncio.get_running_loop().call_later(delay, after_pause)

    buffer.on_text_changed.add_handler(on_text_changed)


class _SuggestionSet(Event[Buffer]):
    """``Buffer.on_suggestion_set`` that fires only when there is a suggestion to draw.

    After every keystroke prompt_toolkit looks for a history suggestion (in a thread) and
    fires this event with what it found, ``None`` too: the prompt was then drawn a second
    time, identical, for every character typed (twice the rendering work per keystroke, and
    a second message right behind the echo). The search only runs while the buffer has no
    suggestion, and every other way to clear one (a text or cursor change) redraws anyway, so
    a ``None`` found there changes nothing on the screen."""

    def fire(self) -> None:
        if self.sender.suggestion is not None:
            super().fire()


def redraw_only_for_a_suggestion(repl: object) -> None:
    """Install :class:`_SuggestionSet` on a ptpython ``PythonRepl``'s input buffer."""
    buffer: Buffer = repl.default_buffer  # type: ignore[attr-defined]
    event = _SuggestionSet(buffer)
    # prompt_toolkit internals: an Event's handlers are not listed publicly
    for handler in buffer.on_suggestion_set._handlers:
        event.add_handler(handler)
    buffer.on_suggestion_set = event
