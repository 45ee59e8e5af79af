"""Every benchmark script runs to its end (issue 12, finding 6: ``make bench`` stopped at the
fifth script, and nothing noticed).

Each script of ``benchmarks/`` (but the ``_*.py`` helpers) runs as ``make bench`` runs it, with
``BLISSNG_BENCH_SMOKE=1``: tiny sizes and one round (``_figures.sized``), so the whole code
path of the script runs in seconds. It must exit 0, print its figures (the JSON lines) and
report no failed section. A script added to the directory is picked up by itself.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
DEADLINE = 240.0  # seconds per script: a tiny run takes 2-35 s at load 10-15


def test_the_benchmarks_are_found() -> None:
    assert len(SCRIPTS) >= 10, [p.name for p in SCRIPTS]


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE + 30)
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_runs_to_its_end(script: Path) -> None:
    source = script.read_text()
    assert "sized(" in source, (
        f"{script.name} must take its sizes from _figures.sized(full, tiny), so that this "
        "smoke test runs it in seconds (BLISSNG_BENCH_SMOKE=1)"
    )
    env = dict(os.environ, BLISSNG_BENCH_SMOKE="1")
    # Its own process group: on a timeout the script's children (Redis, simulators, a demo
    # server) are stopped with it.
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=BENCHMARKS.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{script.name} did not end within {DEADLINE} s:\n{output[-4000:]}")
    assert proc.returncode == 0, f"{script.name} exited {proc.returncode}:\n{output[-4000:]}"
    figures = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert figures, f"{script.name} printed no figure:\n{output[-4000:]}"
    for record in figures:
        assert {"benchmark", "metric", "value", "unit", "load"} <= set(record), record
        assert isinstance(record["value"], int | float), record
    assert not [r for r in figures if not math.isfinite(r["value"])], output[-4000:]
    assert "FAILED" not in output, output[-4000:]
