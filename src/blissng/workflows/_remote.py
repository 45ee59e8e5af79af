"""The Celery executor: submit to a queue, follow the task without blocking the event loop.

Following a task: the result backend (Redis) PUBLISHes every state it stores on the channel
``celery-task-meta-<id>``; the executor subscribes (redis.asyncio) before submitting, then reads
each state from the message itself (Celery's own decoding; big payloads in a worker thread), so
it neither polls nor blocks a thread per job, and sees STARTED even when SUCCESS follows at
once. A slow re-check of the stored state covers a message lost to a reconnect.

Cancelling revokes the task with ``terminate=True`` (the worker kills the pool process that runs
it) and waits, shielded and bounded, for the worker to record it as revoked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

from blissng.errors import Aborted
from blissng.threads import run_in_thread

from ..redisdb import async_client
from ._celery_app import TASK_NAME, celery_app
from ._errors import JobFailed

RECHECK_INTERVAL = 1.0
REVOKE_WAIT = 10.0
META_CHANNEL = "celery-task-meta-{id}"
FINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED")
DECODE_ON_LOOP_MAX = 64 * 1024
NO_WORKER_CHECK = 5.0  # a job not started by then: is any worker serving the queue?


class CeleryExecutor:
    """Runs graphs on Celery workers serving ``queue`` on the broker at ``redis_url``."""

    name = "celery"

    def __init__(self, redis_url: str, queue: str, result_expires: float = 24 * 3600) -> None:
        self.redis_url = redis_url
        self.queue = queue
        self.result_expires = result_expires
        self._app: Any = None

    async def _get_app(self) -> Any:
        if self._app is None:
            # Importing celery and building the app reads modules: not on the loop.
            self._app = await run_in_thread(celery_app, self.redis_url, self.result_expires)
        return self._app

    async def aclose(self) -> None:
        pass

    async def run(
        self,
        job_id: str,
        graph: Mapping[str, Any],
        inputs: Sequence[Mapping[str, Any]],
        on_started: Callable[[int | None, str | None], Awaitable[None]],
        options: Mapping[str, Any] | None = None,
        on_note: Callable[[str], Awaitable[None]] | None = None,
    ) -> Any:
        app = await self._get_app()
        client = async_client(self.redis_url)
        pubsub = client.pubsub()
        submitted = started = False
        try:
            await pubsub.subscribe(META_CHANNEL.format(id=job_id))

            def send() -> None:
                app.send_task(
                    TASK_NAME,
                    args=(dict(graph), list(inputs), job_id, dict(options or {})),
                    task_id=job_id,
                    queue=self.queue,
                )

            await run_in_thread(send)
            submitted = True
            meta = await run_in_thread(app.backend.get_task_meta, job_id)
            check_at = anyio.current_time() + NO_WORKER_CHECK
            while True:
                status = meta.get("status")
                if status == "STARTED" and not started:
                    started = True
                    info = meta.get("result") or {}
                    await on_started(info.get("pid"), info.get("hostname"))
                if status in FINAL_STATES:
                    if not started:  # it started and ended between two looks
                        started = True
                        await on_started(None, None)
                    return self._outcome(job_id, status, meta)
                if not started and on_note is not None and anyio.current_time() > check_at:
                    check_at = float("inf")
                    if not await run_in_thread(self._queue_is_served, app):
                        await on_note(
                            f"no Celery worker serves the queue {self.queue!r}: the job waits "
                            f"for one (start it with `blissng worker --queue {self.queue} ...`)"
                        )
                meta = await self._next_meta(app, pubsub, job_id)
        except BaseException:
            if submitted:
                with anyio.CancelScope(shield=True):
                    await self._revoke(app, job_id, pubsub if started else None)
            raise
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()

    def _queue_is_served(self, app: Any) -> bool:
        """Does a live worker consume our queue? (a broadcast, answered within a second)"""
        try:
            replies = app.control.inspect(timeout=1.0).active_queues() or {}
        except Exception:
            return True  # cannot tell: say nothing rather than something wrong
        return any(
            queue.get("name") == self.queue for queues in replies.values() for queue in queues
        )

    def _outcome(self, job_id: str, status: str, meta: Mapping[str, Any]) -> Any:
        result = meta.get("result")
        if status == "SUCCESS":
            return result
        if status == "REVOKED":
            raise Aborted(f"job {job_id} was revoked on its Celery worker")
        if isinstance(result, JobFailed):
            raise result
        error = f"{type(result).__name__}: {result}" if result is not None else "unknown error"
        raise JobFailed(
            f"Celery task failed: {error}",
            None,
            type(result).__name__,
            meta.get("traceback"),
            job_id,
        )

    @staticmethod
    async def _next_meta(app: Any, pubsub: Any, job_id: str) -> dict[str, Any]:
        """The next state the backend publishes (each message carries it: none is missed
        when STARTED and SUCCESS follow each other fast), or the stored one at a re-check."""
        message = None
        with anyio.move_on_after(RECHECK_INTERVAL):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
        if message is None:
            return await run_in_thread(app.backend.get_task_meta, job_id)
        data = message["data"]
        if len(data) > DECODE_ON_LOOP_MAX:  # a big result: decoded off the loop
            return await run_in_thread(app.backend.decode_result, data)
        return app.backend.decode_result(data)

    async def _revoke(self, app: Any, job_id: str, pubsub: Any | None) -> None:
        """Revoke and terminate. A task that had started: wait (bounded) until its worker has
        killed the process and recorded the end. One still queued is dropped by the worker
        that receives it."""

        def revoke() -> None:
            app.control.revoke(job_id, terminate=True, signal="SIGTERM")

        with anyio.move_on_after(REVOKE_WAIT):
            await run_in_thread(revoke)
            if pubsub is None:
                return
            meta = await run_in_thread(app.backend.get_task_meta, job_id)
            while meta.get("status") not in FINAL_STATES:
                meta = await self._next_meta(app, pubsub, job_id)
