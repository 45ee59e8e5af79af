"""A process on a real pseudo-terminal, as a user at a terminal runs it (``blissng demo``,
``blissng serve``, ``blissng shell SESSION``): type keys, wait for what it shows, with
deadlines."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from blissng.web import terminal_text

BLISSNG = Path(sys.executable).parent / "blissng"
COMMAND = [str(BLISSNG)] if BLISSNG.exists() else [sys.executable, "-m", "blissng"]


class Terminal:
    """``Terminal(["demo"], env)`` runs ``blissng demo`` on a new pty (its own session, so
    that signals sent to it reach it alone). Everything it writes is kept in ``output``."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        environ = dict(os.environ if env is None else env)
        environ.update({"PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"})
        self.process = subprocess.Popen(
            [*COMMAND, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environ,
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""
        self._mark = 0
        self._closed = False

    def _read(self, timeout: float) -> int:
        """Read what comes within ``timeout``: how many bytes (0: nothing; -1: the end)."""
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return 0
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the other side closed
            chunk = b""
        self.output += chunk
        return len(chunk) or -1

    def read_until(self, token: bytes, timeout: float = 60.0, start: int = 0) -> int:
        """Position of ``token`` in the raw output (searching from ``start``)."""
        deadline = time.monotonic() + timeout
        while token not in self.output[start:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {token!r} within {timeout} s: {self.output[-800:]!r}")
            if self._read(remaining) < 0:
                raise AssertionError(f"EOF before {token!r}: {self.output[-800:]!r}")
        return self.output.index(token, start)

    @property
    def text(self) -> str:
        """The output since the last :meth:`mark`, without terminal sequences."""
        return terminal_text(self.output[self._mark :].decode(errors="replace"))

    def mark(self) -> None:
        self._mark = len(self.output)

    def expect(self, text: str, timeout: float = 60.0) -> str:
        """Wait until ``text`` shows (since the last mark); the text seen so far."""
        deadline = time.monotonic() + timeout
        while text not in self.text:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} not seen within {timeout} s: {self.text[-1500:]}")
            if self._read(remaining) < 0:
                raise AssertionError(f"EOF before {text!r}: {self.text[-1500:]}")
        return self.text

    def expect_after(self, text: str, pattern: str, timeout: float = 60.0) -> str:
        """Wait until the regex ``pattern`` matches what follows the last ``text`` shown
        (since the last mark), e.g. the next prompt after a typed command; that part."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            shown = self.text
            after = shown.rsplit(text, 1)[1] if text in shown else ""
            if regex.search(after):
                return after
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{pattern!r} not seen after {text!r} within {timeout} s: {shown[-1500:]}"
                )
            if self._read(remaining) < 0:
                raise AssertionError(f"EOF before {pattern!r}: {shown[-1500:]}")

    def type(self, keys: str | bytes) -> None:
        os.write(self.master, keys.encode() if isinstance(keys, str) else keys)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code (the output is read meanwhile, so the process never blocks on it)."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s: {self.text[-800:]}")
            self._read(0.05)
        while self._read(0.0) > 0:
            pass
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if not self._closed:
            self._closed = True
            os.close(self.master)


class PtyProcess(Terminal):
    """``blissng shell ARGS`` on a pty (``send`` types, ``kill`` ends it)."""

    def __init__(self, *args: str) -> None:
        super().__init__(["shell", *args])

    def send(self, keys: str) -> None:
        self.type(keys)

    def kill(self) -> None:
        self.close()
