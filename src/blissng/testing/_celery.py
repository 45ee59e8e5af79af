"""A real Celery worker for the tests: one process per test session, on the test Redis.

Fixture ``celery_worker`` (session): starts ``python -m blissng.workflows`` against
database ``CELERY_DB`` of the session's settings Redis (the database per-test isolation never
flushes), on a queue of its own, and waits until the worker announces it is ready. At the end
it stops the worker (warm shutdown, then SIGKILL to its process group). The worker also dies
with the test process (``PR_SET_PDEATHSIG``) and its pool children with it.

Registered in :mod:`blissng.testing.plugin` by one import line. Celery is imported only by the
worker process, so the plugin loads without the ``workflows`` extra.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 90.0  # a cold worker imports celery and ewoks on a loaded 2-core machine
STOP_TIMEOUT = 20.0


@dataclasses.dataclass
class CeleryWorker:
    """The running test worker: where it listens, and settings for a ``JobManager``."""

    url: str
    queue: str
    hostname: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def settings(self, **extra: Any) -> dict[str, Any]:
        """``JobManager(settings=worker.settings())`` submits to this worker."""
        return {"executor": "celery", "queue": self.queue, "celery_url": self.url, **extra}


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process goes away. Linux only."""
    name = ctypes.util.find_library("c")
    if name is not None:
        ctypes.CDLL(name, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_celery_worker(url: str, queue: str, log: Path, concurrency: int = 2) -> CeleryWorker:
    """Start the worker and return once it is ready (it prints ``WORKER_READY_LINE``)."""
    from blissng.workflows import WORKER_READY_LINE

    hostname = f"{queue}@localhost"
    with log.open("wb") as log_file:
        command = [
            sys.executable, "-m", "blissng.workflows",
            "--broker", url,
            "--queue", queue,
            "--concurrency", str(concurrency),
            "--hostname", hostname,
            "--loglevel", "INFO",
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            preexec_fn=_die_with_parent,  # the fixture runs in the main thread
            start_new_session=True,  # its own process group: stopped with its pool children
        )
    ready = threading.Event()

    def drain() -> None:
        # The worker's stdout must be read to its end, or a chatty worker would block on it.
        assert process.stdout is not None
        for line in process.stdout:
            if line.decode(errors="replace").startswith(WORKER_READY_LINE):
                ready.set()
        ready.set()  # EOF: the worker exited

    threading.Thread(target=drain, name="celery-worker-stdout", daemon=True).start()
    worker = CeleryWorker(url, queue, hostname, process, log)
    if not ready.wait(START_TIMEOUT) or process.poll() is not None:
        stop_celery_worker(worker)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(
            f"the Celery test worker did not become ready within {START_TIMEOUT:.0f} s "
            f"(exit code {process.returncode}); its log {log} ends:\n{tail}"
        )
    return worker


def stop_celery_worker(worker: CeleryWorker) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL to the whole process group."""
    process = worker.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # pool children left behind, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT)


@pytest.fixture(scope="session")
def celery_worker(
    redis_stack: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    """A Celery worker for blissng's jobs, on database CELERY_DB of the test settings Redis."""
    from blissng.redisdb import url_with_db
    from blissng.workflows import CELERY_DB

    url = url_with_db(redis_stack.urls.settings, CELERY_DB)
    queue = f"blissng-test-{os.getpid()}"
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    worker = start_celery_worker(url, queue, log)
    try:
        yield worker
    finally:
        stop_celery_worker(worker)
