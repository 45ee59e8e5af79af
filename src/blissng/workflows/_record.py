"""Jobs in the data Redis, like scans: a document per job and a stream that announces them.

Keys (documented in docs/workflows.md):

- ``blissng:job:<id>``    hash: id, name, source, executor, session, scan, state, submitted,
                    started, ended, inputs (JSON), result (JSON summary), error, node, worker,
                    pid, note (e.g. no Celery worker serves the queue). Expires
                    ``job_ttl`` seconds after its last change (so after the job ends; a
                    job still running refreshes it at each change).
- ``blissng:jobs``        stream, one entry per state change: ``{id, state, session}``; clients
                    XREAD it to discover jobs as they are submitted and follow them. Trimmed to
                    about ``STREAM_LENGTH`` entries (its documents expire anyway).
- ``blissng:jobs:index``  sorted set of job ids by submission time, to list recent jobs; ids older
                    than ``job_ttl`` are removed as new jobs come.

Writing is the client's job (the manager sees every transition for both executors), so a
Celery worker needs no access to the data Redis.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import redis.asyncio as aredis

from blissng.redisdb import text

from ._job import Job

log = logging.getLogger(__name__)

# The data model's prefix (blissng.data.keys.PREFIX; not imported: worker processes import this
# package and need none of the data layer).
PREFIX = "blissng"
JOB_KEY = PREFIX + ":job:{id}"
STREAM_KEY = f"{PREFIX}:jobs"
INDEX_KEY = f"{PREFIX}:jobs:index"
STREAM_LENGTH = 10_000
SUMMARY_CHARS = 2_000


def summarize(value: Any, depth: int = 0) -> Any:
    """A JSON-able, bounded picture of a result or an input: numbers and short strings as they
    are, arrays as ``{"dtype", "shape"}`` (small ones with their values), the rest by repr."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 60:
        return f"<int of {value.bit_length()} bits>"  # JSON readers lose precision anyway
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "…"
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        if shape == ():
            return value.item()
        summary: dict[str, Any] = {"dtype": str(dtype), "shape": list(shape)}
        if value.size <= 16 and dtype.kind in "biuf":
            summary["values"] = value.tolist()
        return summary
    if depth < 3 and isinstance(value, Mapping):
        return {str(k): summarize(v, depth + 1) for k, v in list(value.items())[:50]}
    if depth < 3 and isinstance(value, list | tuple):
        return [summarize(v, depth + 1) for v in value[:50]]
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "…"


def _input_name(item: Mapping[str, Any]) -> str:
    """``name`` for the start nodes, ``node.name`` for one node, ``*.name`` for all."""
    if item.get("id") is not None:
        return f"{item['id']}.{item.get('name')}"
    if item.get("all"):
        return f"*.{item.get('name')}"
    return str(item.get("name"))


def _json(value: Any) -> str:
    text = json.dumps(summarize(value))
    return text if len(text) <= SUMMARY_CHARS else json.dumps(text[:SUMMARY_CHARS] + "…")


class JobRecorder:
    """Writes job documents and state changes to the data Redis. Never fails a job: a Redis
    error is logged (the job's result is still delivered to its caller)."""

    def __init__(self, client: aredis.Redis, ttl: float, session: str | None = None) -> None:
        self.client = client
        self.ttl = int(ttl)
        self.session = session or ""

    async def submitted(self, job: Job) -> None:
        fields = {
            "id": job.id,
            "name": job.name,
            "source": job.workflow.source,
            "executor": job.executor,
            "session": self.session,
            "scan": job.scan or "",
            "state": str(job.state),
            "submitted": repr(job.submitted),
            "timeout": repr(job.timeout) if job.timeout is not None else "",
            "inputs": _json({_input_name(i): i.get("value") for i in job.inputs}),
        }
        await self._write(job, fields, index=True)

    async def running(self, job: Job) -> None:
        fields = {
            "state": str(job.state),
            "started": repr(job.started),
            "worker": job.worker or "",
            "pid": str(job.pid or ""),
        }
        await self._write(job, fields)

    async def note(self, job: Job) -> None:
        """Something the user should know while the job waits (no Celery worker, ...)."""
        await self._write(job, {"state": str(job.state), "note": job.note or ""}, stream=False)

    async def finished(self, job: Job, result: Any, error: BaseException | None) -> None:
        fields = {"state": str(job.state), "ended": repr(job.ended)}
        if error is not None:
            fields["error"] = str(error)[:SUMMARY_CHARS]
            node = getattr(error, "node", None)
            if node:
                fields["node"] = str(node)
        else:
            fields["result"] = _json(result)
        await self._write(job, fields)

    async def _write(
        self, job: Job, fields: dict[str, Any], index: bool = False, stream: bool = True
    ) -> None:
        key = JOB_KEY.format(id=job.id)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                pipe.expire(key, self.ttl)
                if index:
                    pipe.zadd(INDEX_KEY, {job.id: job.submitted})
                    pipe.zremrangebyscore(INDEX_KEY, "-inf", time.time() - self.ttl)
                    pipe.expire(INDEX_KEY, self.ttl)
                if stream:
                    pipe.xadd(
                        STREAM_KEY,
                        {
                            "id": job.id,
                            "state": fields.get("state", str(job.state)),
                            "session": self.session,
                        },
                        maxlen=STREAM_LENGTH,
                        approximate=True,
                    )
                await pipe.execute()
        except Exception as exc:
            log.warning("could not record job %s in Redis: %s", job.id, exc)


# ---------------------------------------------------------------------- readers


def _decode(raw: Mapping[Any, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in raw.items():
        k = text(key)
        v: Any = text(value)
        if k in ("inputs", "result"):
            v = json.loads(v)
        elif k in ("submitted", "started", "ended", "timeout"):
            v = float(v) if v else None
        elif k == "pid":
            v = int(v) if v else None
        doc[k] = v
    return doc


async def read_job(client: aredis.Redis, job_id: str) -> dict[str, Any] | None:
    """The document of one job (decoded), or None if it expired or never existed."""
    raw = await client.hgetall(JOB_KEY.format(id=job_id))
    return _decode(raw) if raw else None


async def list_jobs(client: aredis.Redis, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent jobs first, those whose documents have not expired."""
    ids = await client.zrevrange(INDEX_KEY, 0, limit - 1)
    docs = []
    for raw_id in ids:
        doc = await read_job(client, text(raw_id))
        if doc is not None:
            docs.append(doc)
    return docs


async def follow_jobs(
    client: aredis.Redis, *, since: str = "$", session: str | None = None, block: float = 1.0
) -> AsyncIterator[tuple[str, str, dict[str, Any] | None]]:
    """``(job id, state, document)`` for each state change from now on (``since="0"``: also
    the ones still in the stream), of one session or all. The document is read at that moment
    (``None`` once expired). Ends only when cancelled."""
    last = since
    while True:
        found: Any = await client.xread({STREAM_KEY: last}, block=int(block * 1000))
        for _key, entries in found:
            for entry_id, fields in entries:
                last = text(entry_id)
                entry = _decode(fields)
                if session is not None and entry.get("session") != session:
                    continue
                yield entry["id"], entry["state"], await read_job(client, entry["id"])
