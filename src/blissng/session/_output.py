"""A session's output stream: what its commands print, fanned out to attached consoles.

Commands print to the ``output`` of their scan context. A session owns one
:class:`SessionOutput`; consoles (a terminal, a browser tab) ``attach`` a writer and receive
everything printed from then on. A command run for one console may instead be given that
console's own writer (``Session.submit(..., output=...)``): output is routed by the context
of the command (a context variable), never by swapping process-wide ``sys.stdout``.

Writers are plain callables taking text; they must not block (a console queues the text).
The last ``history`` characters are kept, so a console that reattaches can replay them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

Writer = Callable[[str], object]


class SessionOutput:
    """A text stream (``write``/``flush``) that fans out to attached writers."""

    def __init__(self, history: int = 64 * 1024) -> None:
        self._writers: list[Writer] = []
        self._history: deque[str] = deque()
        self._history_size = 0
        self._history_limit = history

    def attach(self, writer: Writer, *, replay: bool = False) -> Callable[[], None]:
        """Send every future write to ``writer`` (and the kept history first if ``replay``);
        returns the function that detaches it."""
        if replay:
            text = self.history()
            if text:
                writer(text)
        self._writers.append(writer)

        def detach() -> None:
            if writer in self._writers:
                self._writers.remove(writer)

        return detach

    def write(self, text: str) -> int:
        if not text:
            return 0
        self._history.append(text)
        self._history_size += len(text)
        while self._history_size > self._history_limit and len(self._history) > 1:
            self._history_size -= len(self._history.popleft())
        for writer in list(self._writers):
            try:
                writer(text)
            except Exception:  # a broken console must not break the command printing
                self._writers.remove(writer)
        return len(text)

    def flush(self) -> None:
        """Writers receive text at once; nothing to flush."""

    def history(self) -> str:
        return "".join(self._history)

    def isatty(self) -> bool:
        return False
