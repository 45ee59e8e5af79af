"""Without the ``workflows`` extra, run_job says which extra to install.

The absence is real for the process under test: a child Python whose import system refuses
ewoks and celery (a finder on ``sys.meta_path``), not a mocked executor.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import sys

    class Refuse:
        BLOCKED = ("ewoks", "ewokscore", "ewoksjob", "celery")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())

    import anyio
    from blissng.workflows import JobManager, WorkflowsNotInstalled

    GRAPH = {"nodes": [{"id": "a", "task_type": "method", "task_identifier": "math.sqrt"}]}

    async def main():
        async with JobManager() as jobs:
            for executor in ("local", "celery"):
                try:
                    jobs.run_job(GRAPH, executor=executor)
                except WorkflowsNotInstalled as exc:
                    print(executor, "->", exc)
                else:
                    print(executor, "-> no error")
        assert "ewoks" not in sys.modules and "celery" not in sys.modules

    anyio.run(main)
    """
)


@pytest.mark.timeout(60)
def test_run_job_names_the_extra_to_install_when_ewoks_is_missing():
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=50, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" -> ", 1) for line in out.stdout.strip().splitlines())
    assert "pip install 'blissng[workflows]'" in lines["local"]
    assert "ewoks" in lines["local"]
    assert "pip install 'blissng[workflows]'" in lines["celery"]
    assert "ewoks, celery" in lines["celery"]
