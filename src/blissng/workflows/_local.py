"""The local executor: warm worker processes, one job at a time each, killed to cancel a job.

Why not ``concurrent.futures.ProcessPoolExecutor`` (what ``ewoksjob.client.local`` uses)? Its
futures cannot stop a job once it runs. Here each worker is a process of its own (``spawn``
start method, never ``fork``: the parent runs an event loop and threads), reused for the next
job when a job ends normally and terminated (its whole process group) when a job is cancelled or
times out; a new worker replaces it on demand.

Waiting never blocks the event loop: the pipe's file descriptor is awaited with
``anyio.wait_readable``; only spawning and joining a process go to a worker thread.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any

import anyio

from blissng.threads import run_in_thread

from ._errors import JobFailed
from ._local_worker import worker_main

START_TIMEOUT = 60.0  # importing ewoks on a loaded machine
TERMINATE_GRACE = 3.0


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid


class LocalExecutor:
    """Runs graphs in up to ``max_workers`` local processes; more jobs wait for a free one."""

    name = "local"

    def __init__(self, max_workers: int = 2) -> None:
        if max_workers < 1:
            raise ValueError(f"workflows.local_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._slots = anyio.Semaphore(max_workers)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._context = multiprocessing.get_context("spawn")

    # ------------------------------------------------------------------ lifecycle

    async def warm_up(self, count: int = 1) -> None:
        """Start ``count`` idle workers ahead of the first jobs (each imports ewoks: ~1 s)."""
        for _ in range(min(count, self.max_workers) - len(self._idle)):
            self._idle.append(await self._spawn())

    async def aclose(self) -> None:
        """Terminate every worker (idle ones; busy ones are terminated by their job's cancel)."""
        with anyio.CancelScope(shield=True):
            while self._idle:
                await self._terminate(self._idle.pop())

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in [*self._idle, *self._busy]]

    # ------------------------------------------------------------------ one job

    async def run(
        self,
        job_id: str,
        graph: Mapping[str, Any],
        inputs: Sequence[Mapping[str, Any]],
        on_started: Callable[[int | None], Awaitable[None]],
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run the graph in a worker; cancelling this call terminates the worker process."""
        message = (job_id, dict(graph), list(inputs), dict(options or {}))
        try:
            # Pickled off the loop (inputs may hold big arrays), once, before taking a worker.
            data = await run_in_thread(ForkingPickler.dumps, message)
        except Exception as exc:
            raise JobFailed(f"the job's inputs cannot be sent to a worker process: {exc}") from None
        async with self._slots:
            worker = await self._send(bytes(data))
            self._busy.add(worker)
            reusable = False
            try:
                kind, _ = await self._receive(worker)
                if kind != "started":
                    raise JobFailed(f"local worker {worker.pid} answered {kind!r}, not 'started'")
                await on_started(worker.pid)
                kind, payload = await self._receive(worker)
                reusable = True
                if kind == "failed":
                    raise payload
                return payload
            finally:
                self._busy.discard(worker)
                if reusable and worker.process.is_alive():
                    self._idle.append(worker)
                else:
                    with anyio.CancelScope(shield=True):
                        await self._terminate(worker)

    async def _send(self, data: bytes) -> _Worker:
        """Hand the job to a worker; an idle one that died meanwhile (its pipe is broken) is
        replaced by a new one."""
        worker = await self._take_worker()
        try:
            await run_in_thread(worker.conn.send_bytes, data)
        except OSError:
            with anyio.CancelScope(shield=True):
                await self._terminate(worker)
            worker = await self._spawn()
            try:
                await run_in_thread(worker.conn.send_bytes, data)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._terminate(worker)
                raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._terminate(worker)
            raise
        return worker

    async def _take_worker(self) -> _Worker:
        """An idle worker still alive (one may have been killed meanwhile), or a new one."""
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                return worker
            with anyio.CancelScope(shield=True):
                await self._terminate(worker)
        return await self._spawn()

    async def _receive(self, worker: _Worker) -> tuple[str, Any]:
        await anyio.wait_readable(worker.conn.fileno())
        try:
            # The message may be large (a result array): read it off the loop.
            message = await run_in_thread(worker.conn.recv)
        except (EOFError, OSError):
            await run_in_thread(worker.process.join, TERMINATE_GRACE)
            raise JobFailed(
                f"local worker process {worker.pid} died (exit code {worker.process.exitcode})"
            ) from None
        return message

    # ------------------------------------------------------------------ processes

    async def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main,
            args=(child_conn, os.getpid()),
            name="blissng-workflow-worker",
            daemon=True,
        )
        await run_in_thread(process.start)
        child_conn.close()
        worker = _Worker(process, parent_conn)
        try:
            with anyio.fail_after(START_TIMEOUT):
                kind, _ = await self._receive(worker)
        except TimeoutError:
            with anyio.CancelScope(shield=True):
                await self._terminate(worker)
            raise JobFailed(
                f"local workflow worker did not start within {START_TIMEOUT:.0f} s"
            ) from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._terminate(worker)
            raise
        if kind != "ready":
            raise JobFailed(f"local workflow worker sent {kind!r} instead of 'ready'")
        return worker

    async def _terminate(self, worker: _Worker) -> None:
        """SIGTERM the worker's process group, SIGKILL it after a grace period, reap it."""
        process = worker.process
        if process.pid is not None and process.exitcode is None:
            _signal(process.pid, signal.SIGTERM)
            await run_in_thread(process.join, TERMINATE_GRACE)
            if process.exitcode is None:
                _signal(process.pid, signal.SIGKILL)
                await run_in_thread(process.join, TERMINATE_GRACE)
        worker.conn.close()
        with contextlib.suppress(ValueError):
            process.close()


def _signal(pid: int, sig: int) -> None:
    """The worker's process group; the process alone if it has not made its group yet."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
