"""A session's setup script: read, compiled, run as the session's first command.

The script runs in the session's namespace in a worker thread, as any command (so it may call
scan commands). What goes wrong (an unreadable file, a syntax error, an exception) is shown
in the session's output and returned: the session starts anyway.
"""

from __future__ import annotations

import functools
from pathlib import Path

from blissng.threads import run_in_thread

from ._command import CommandRunner, Output
from ._typed import error_text


async def run_setup(
    runner: CommandRunner, source: str | None, setup_file: Path | None, output: Output
) -> str | None:
    """Run ``source`` (else the text of ``setup_file``) with ``runner``, in its namespace;
    return what went wrong, on one line, or None."""
    name = runner.name
    filename = "<setup>"
    if source is None and setup_file is not None:
        filename = str(setup_file)
        try:
            source = await run_in_thread(setup_file.read_text)
        except OSError as exc:
            error = f"cannot read the setup script {setup_file}: {exc.strerror or exc}"
            output.write(f"!!! setup of {name}: {error}\n")
            return error
    if not source:
        return None
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        error = f"SyntaxError in {filename}, line {exc.lineno}: {exc.msg}"
        output.write(f"!!! setup of {name}: {error}\n")
        return error
    cmd = runner.submit(functools.partial(exec, code, runner.namespace), text=f"setup {filename}")
    await cmd.wait_done()
    if cmd.error is None:
        return None
    error = error_text(cmd.error)
    output.write(f"!!! setup of {name} failed: {error}\n")
    return error
