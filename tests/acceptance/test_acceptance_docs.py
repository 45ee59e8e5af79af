"""Every command README.md, docs/getting-started.md and docs/scans.md show, run on a real
``blissng demo --headless`` as users run them, showing what the documents say.

The commands are parsed from the documents (a changed example is tested as it is written):
the README's "At the prompt" block and its inline calls, getting-started's ``demo [N]:``
block, and the inline calls of docs/scans.md's sections for users that name only what the
demo session has (its commands, its objects: signatures such as ``ascan(motor, start, ...)``
are not commands), the data policy table among them. Where a document says what a command
prints or does, that is checked (:data:`EXPECTED`); every command must run without an error
and show something. The start-up lines both show are looked for in the demo's log.

docs/scans.md's continuous-scan block (``fscan``...) is run by
``tests/test_scans_continuous.py`` on the motor limits it names; the ``blissng`` command
lines of getting-started by ``tests/test_cli.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ptys import PtyProcess
from serverkit import ServerProcess

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
SCANS_DOC = ROOT / "docs" / "scans.md"

# What the documents say a command shows (a regex searched in what the console showed after
# the command). Commands not listed must run without an error and show something.
EXPECTED: dict[str, str] = {
    # README.md
    "m1.move(0.5); m1.position": r"Out \[\d+\]: 0\.5\b",
    "ct(1)": r"(?s)simct.*diode =.*scaler.*det\[counts\] =.*Finished: 1/1 points",
    "ct(0.1, diode)": r"(?s)simct\s+diode =.*Finished: 1/1 points",
    "ascan(m1, 0, 2, 20, 0.1)": r"(?s)\bdiode\b.*\bsdiode\b.*Finished: 21/21 points",
    "ascan(m1, 0, 2, 20, 0.1, diode)": r"Finished: 21/21 points",
    "cen(diode)": r"Out \[\d+\]: \(-?\d[\d.e-]*, \d[\d.e-]*\)",
    "fwhm(diode)": r"Out \[\d+\]: \d[\d.e-]*",
    "dscan(m2, -1, 1, 10, 0.05, diode2)": r"Finished: 11/11 points",
    "lineup(m1, -1, 1, 20, 0.05, diode)": r"Finished: 21/21 points",
    "a3scan(m1, 0, 1, m2, 0, 1, th, 0, 10, 10, 0.01, diode)": r"(?s)\bm1\b.*\bm2\b.*\bth\b.*11/11",
    "umvct(m1, 0.5, diode)": r"(?s)\bm1\b.*\bdiode\b",
    "wa()": r"(?s)Current Positions.*\bm1\b.*\bm2\b.*\bth\b",
    "wu()": r"(?s)\bm1\b.*\bm2\b",
    "lscnt()": r"simct:diode",
    "lsmg()": r"\*\s*MG1",
    "MG1": r"(?s)Enabled:.*simct:diode.*Disabled:",
    "a2scan(m1, 0, 1, tm1, 0, 2, 10, 0.1, scaler, ecount, tcount)": (
        r"(?s)\btm1\b.*\bedet\b.*\btcounts\b.*Finished: 11/11 points"
    ),
    'newsample("kapton")': r"Data path: \S*/inhouse/kapton/kapton_0001",
    "newdataset()": r"Data path: \S*/kapton_\d{4}",
    "SCANS[-1]": r"Scan \d+|#",
    # docs/getting-started.md
    "m1.position": r"Out \[\d+\]: -?\d",
    'config.info("m1")': r"motors\.yml",
    # docs/scans.md (the data policy: each prints the new `Data path:`)
    'newproposal("blc123")': r"Data path: \S*/blc123/sample/sample_0001",
    'newcollection("kapton")': r"Data path: \S*/blc123/kapton/kapton_\d{4}",
    'newdataset("align")': r"Data path: \S*/kapton_align",
    "newdataset(5)": r"Data path: \S*/kapton_0005",
    "enddataset()": r"Data path: \S*/kapton_\d{4}",
    'lsobj("m*")': r"\bm1\b",
    "wm(m1, m2)": r"(?s)\bm1\b.*\bm2\b",
    "where()": r"\d",
}
# Run by tests/test_scans_continuous.py on the limits docs/scans.md names (not the demo's).
CONTINUOUS = {"fscan", "f2scan", "fscan2d", "ftimescan"}
# Commands that show nothing when they work (an assignment, a move).
SILENT = {"m1.move(1.5)", "m1.velocity = 2", "mv(m1, 1, m2, 2)", "plotselect(None)"}


def _code_blocks(text: str, language: str) -> list[str]:
    """The fenced blocks of ``language`` ("" for those without one), in order."""
    blocks: list[str] = []
    fence: str | None = None  # the language of the block the line is in; None: outside
    lines: list[str] = []
    for line in text.splitlines():
        if not line.startswith("```"):
            lines.append(line)
        elif fence is None:
            fence, lines = line[3:].strip(), []
        else:
            if fence == language:
                blocks.append("\n".join(lines) + "\n")
            fence = None
    return blocks


def _inline_calls(text: str) -> list[str]:
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`([A-Za-z_][A-Za-z_0-9.]*\([^`]*\))`", outside)


def _without_comment(line: str) -> str:
    return line.split("  #", 1)[0].strip()


def readme_commands() -> list[str]:
    text = README.read_text()
    block = _code_blocks(text.split("## At the prompt", 1)[1], "python")[0]
    return [c for c in map(_without_comment, block.splitlines()) if c] + _inline_calls(text)


def getting_started_commands() -> list[str]:
    found = []
    for block in _code_blocks(GETTING_STARTED.read_text(), "python"):
        for line in block.splitlines():
            prompt = re.match(r"demo \[\d+\]: (.*)", line)
            if prompt:
                found.append(_without_comment(prompt.group(1)))
    return found


# The sections of docs/scans.md for users at the prompt (the others are for engineers).
USER_SECTIONS = ("## Commands, as BLISS users know them", "## Scan saving and measurement groups")


def scans_doc_commands(namespace: set[str]) -> list[str]:
    """docs/scans.md's inline calls, in its sections for users, made only of the session's
    names and literals."""
    sections = re.split(r"(?m)^(?=## )", SCANS_DOC.read_text())
    text = "".join(s for s in sections if s.startswith(USER_SECTIONS))
    found = []
    for call in _inline_calls(text):
        try:
            tree = ast.parse(call, mode="eval")
        except SyntaxError:
            continue  # a fragment: `blissng.session.sessions_from_config(config,`
        nodes = list(ast.walk(tree))
        names = {n.id for n in nodes if isinstance(n, ast.Name)}
        placeholder = any(
            isinstance(n, ast.Starred) or (isinstance(n, ast.Constant) and n.value is ...)
            for n in nodes
        )
        continuous = call.split("(", 1)[0] in CONTINUOUS
        if names <= namespace and not (placeholder or continuous) and call not in found:
            found.append(call)
    return found


def test_the_documents_show_commands() -> None:
    readme = readme_commands()
    assert "ct(1)" in readme and "ascan(m1, 0, 2, 20, 0.1, diode)" in readme
    assert "wa()" in readme  # an inline one
    assert 'config.info("m1")' in getting_started_commands()
    found = scans_doc_commands({"newdataset", "lscnt", "scaler", "ascan", "m1"})
    assert "newdataset(5)" in found and "lscnt(scaler)" in found
    assert not any("motor" in c for c in found)  # signatures are not commands


@pytest.fixture(scope="module")
def namespace(demo: ServerProcess) -> set[str]:
    with demo.client("docs") as client:
        names = client.run("demo", "sorted(session.namespace)")["result"]
    return set(ast.literal_eval(names))


def _run_all(
    demo: ServerProcess, commands: list[str], expected: dict[str, str] = EXPECTED
) -> dict[str, str]:
    shown: dict[str, str] = {}
    with demo.console() as tab:
        for command in commands:
            if command in shown:
                continue
            out = tab.run(command, timeout=120).rsplit(command, 1)[-1]
            shown[command] = out
            assert "!!!" not in out and "Traceback" not in out, f"{command}:\n{out}"
            if command not in SILENT:
                assert re.sub(r"demo \[\d+\]:", "", out).strip(), f"{command} showed nothing"
            if command in expected:
                assert re.search(expected[command], out), (
                    f"{command} should show {expected[command]!r}:\n{out}"
                )
    return shown


def test_readme_commands_show_what_the_readme_says(demo: ServerProcess) -> None:
    commands = readme_commands()
    shown = _run_all(demo, commands)
    assert "m1" in shown["plotselect(diode)"] or "diode" in shown["plotselect(diode)"]


def test_getting_started_commands_show_what_it_says(demo: ServerProcess) -> None:
    _run_all(demo, getting_started_commands())


def test_scans_doc_commands_run_in_the_demo(demo: ServerProcess, namespace: set[str]) -> None:
    commands = scans_doc_commands(namespace)
    assert len(commands) >= 20, commands
    # set_active_mg(MG2) last: the other documents' examples count the active group MG1
    commands.sort(key=lambda c: c.startswith("set_active_mg"))
    with demo.console() as tab:  # the alignment helpers work on the last scan: one first
        assert "Finished" in tab.run("ascan(m1, -1, 1, 10, 0.01, diode)", timeout=60)
    try:
        # its table's newsample("kapton") comes after newproposal("blc123")
        kapton = r"Data path: \S*/blc123/kapton/kapton_\d{4}"
        _run_all(demo, commands, {**EXPECTED, 'newsample("kapton")': kapton})
    finally:  # as the other documents expect to find the session
        with demo.console() as tab:
            tab.run('set_active_mg(MG1); newproposal("inhouse"); plotselect(None)')


def _log_pattern(line: str) -> str:
    """A documented log line as a regex: ``...`` is anything, times and the port vary."""
    parts = [re.escape(part) for part in line.strip().split("...")]
    pattern = ".*".join(parts)
    pattern = re.sub(r"\d+\\\.\d+(?=\\ s)", r"[\\d.]+", pattern)  # "ready in 1.9 s"
    return pattern.replace("8765", r"\d+")


def documented_log_lines() -> list[str]:
    """The start-up lines README.md and getting-started show (those a headless demo logs)."""
    found = []
    for path in (README, GETTING_STARTED):
        for block in _code_blocks(path.read_text(), ""):
            for line in block.splitlines():
                if " INFO " in line or line.startswith("web shell:"):
                    found.append(line)
    return found


def test_the_demo_logs_what_the_documents_show(demo: ServerProcess) -> None:
    lines = documented_log_lines()
    assert len(lines) >= 5, lines
    log = "\n".join(demo.lines())
    for line in lines:
        assert re.search(_log_pattern(line), log), f"not in the demo's log: {line}\n{log}"


def test_getting_started_and_readme_in_blissng_shell_on_a_terminal(demo: ServerProcess) -> None:
    """``blissng shell demo`` on a pty: a README command, and Ctrl-C stopping ``m1.move(10)``
    (getting-started: the motor stops)."""
    shell = PtyProcess("demo", "--url", demo.url, "--token", demo.token)
    try:
        shell.expect("demo [1]:")
        shell.send("ct(0.1)\r")
        text = shell.expect("demo [2]:", timeout=60)
        assert "simct" in text and "scaler" in text and "!!!" not in text
        shell.send("m1.velocity = 2; m1.move(10)\r")
        shell.expect("m1.move(10)")
        shell.send("\x03")
        shell.expect("KeyboardInterrupt: command aborted", timeout=30)
        shell.mark()
        shell.send("m1.position < 9.9, m1.state.value\r")
        shell.expect("(True, 'READY')", timeout=30)
        shell.send("m1.move(0)\r")
        shell.expect_after("m1.move(0)", r"demo \[\d+\]: ", timeout=60)
        shell.send("\x04")
        assert shell.wait() == 0
    finally:
        shell.kill()
