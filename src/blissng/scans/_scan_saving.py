"""Where a session's scans are saved: BLISS's ``SCAN_SAVING``, one per session.

A data set is one HDF5 file holding one entry per scan (``1.1``, ``2.1``, ...). Its path is
built from a template over base path, proposal, collection (the sample), data set and
session::

    {base_path}/{proposal}/{collection}/{collection}_{dataset}/{collection}_{dataset}.h5

The values are settings of the session (kept in the settings Redis when the session has
one), so they survive restarts. Two sessions never write the same file: before a scan, the
session *claims* its file in Redis (``scan_saving:claims``: path -> session); a file claimed by
another session is refused with a message, and :meth:`ScanSaving.newdataset` skips data sets
that exist on disk or are claimed. The scan document carries the full target path and entry
name, so the writer needs nothing else.

Free space and permissions are checked in a worker thread with a timeout (``blissng.scans._fs``).
"""

from __future__ import annotations

import os
import re
import string
from typing import Any, Literal

import redis.asyncio as aredis
from pydantic import BaseModel, field_validator

from blissng.data import close_dataset
from blissng.errors import BlissngError
from blissng.redisdb import ObjectSettings, SettingsStore

from ._bridge import command, on_event_loop_thread, run_blocking
from ._clients import shared_client
from ._context import current_context
from ._fs import DEFAULT_MIN_FREE_MB, check_directory, fs_call

DEFAULT_BASE_PATH = os.environ.get("BLISSNG_DATA", "/tmp/blissng/data")
DEFAULT_TEMPLATE = "{proposal}/{collection}/{collection}_{dataset}"
DEFAULT_FILENAME = "{collection}_{dataset}.h5"
CLAIMS_KEY = "scan_saving:claims"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class ScanSavingError(BlissngError, ValueError):
    """A saving parameter is invalid, or the target file belongs to another session."""


DEFAULT_PROPOSAL = "inhouse"
DEFAULT_COLLECTION = "sample"


class ScanSavingValues(BaseModel):
    """The persistent part of a session's scan saving."""

    base_path: str = DEFAULT_BASE_PATH
    proposal: str = DEFAULT_PROPOSAL
    collection: str = DEFAULT_COLLECTION
    dataset: str = "0001"
    template: str = DEFAULT_TEMPLATE
    data_filename: str = DEFAULT_FILENAME
    writer: Literal["hdf5", "null"] = "hdf5"  # "null": scans are published, never saved
    min_free_mb: float = DEFAULT_MIN_FREE_MB  # the writer keeps the same free (fs.py)

    @field_validator("proposal", "collection", "dataset")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} may only hold letters, digits, '_', '-' and '.' (it names a directory)"
            )
        return value

    @field_validator("base_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError(f"base_path must be an absolute path, got {value!r}")
        return value

    @field_validator("template", "data_filename")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        allowed = {"base_path", "proposal", "collection", "dataset", "session"}
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f}
        unknown = fields - allowed
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(sorted(unknown))} in {value!r}; "
                f"use {', '.join(sorted(allowed))}"
            )
        return value


class ScanSaving:
    """A session's saving parameters. Attribute writes are validated and stored.

    Setting an attribute from a console thread stores it at once; from async code, ``await
    scan_saving.set(collection=...)`` (or the next scan stores it).
    """

    _fields = tuple(ScanSavingValues.model_fields)

    def __init__(
        self,
        session: str,
        *,
        settings: SettingsStore | None = None,
        defaults: ScanSavingValues | None = None,
    ) -> None:
        object.__setattr__(self, "session", session)
        object.__setattr__(self, "_values", defaults or ScanSavingValues())
        store: ObjectSettings[ScanSavingValues] | None = (
            settings.object(f"scan_saving:{session}", ScanSavingValues, self._values)
            if settings is not None
            else None
        )
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_redis", settings.redis if settings is not None else None)
        object.__setattr__(self, "_dirty", set())

    # ------------------------------------------------------------------ values

    @property
    def values(self) -> ScanSavingValues:
        return self._values

    def __getattr__(self, name: str) -> Any:
        if name in ScanSaving._fields:
            return getattr(self._values, name)
        raise AttributeError(f"SCAN_SAVING has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in ScanSaving._fields:
            raise AttributeError(
                f"SCAN_SAVING has no parameter {name!r}; it has {', '.join(ScanSaving._fields)}"
            )
        self._apply({name: value})
        if not on_event_loop_thread() and self._store is not None:
            run_blocking(self._persist)

    def _apply(self, changes: dict[str, Any]) -> None:
        try:
            values = ScanSavingValues.model_validate({**self._values.model_dump(), **changes})
        except Exception as exc:
            raise ScanSavingError(f"invalid SCAN_SAVING value: {exc}") from None
        object.__setattr__(self, "_values", values)
        self._dirty.update(changes)

    async def _persist(self) -> None:
        if self._store is not None and self._dirty:
            dumped = self._values.model_dump()
            await self._store.set(**{f: dumped[f] for f in self._dirty})
        self._dirty.clear()

    async def load(self) -> None:
        """Read the stored values (a session does this at start)."""
        if self._store is not None:
            object.__setattr__(self, "_values", await self._store.load())

    @command
    async def set(self, **changes: Any) -> None:
        """Change and store several parameters at once."""
        self._apply(changes)
        await self._persist()

    # ------------------------------------------------------------------ paths

    def _format(self, template: str, **override: str) -> str:
        fields = {**self._values.model_dump(), "session": self.session, **override}
        return template.format(**fields)

    @property
    def root_path(self) -> str:
        """The data set's directory."""
        return os.path.join(self._values.base_path, self._format(self._values.template))

    @property
    def filename(self) -> str:
        """The data set's HDF5 file: every scan of the data set goes there."""
        return os.path.join(self.root_path, self._format(self._values.data_filename))

    def _filename_for(self, dataset: str, **fields: str) -> str:
        fields["dataset"] = dataset
        root = os.path.join(self._values.base_path, self._format(self._values.template, **fields))
        return os.path.join(root, self._format(self._values.data_filename, **fields))

    # ------------------------------------------------------------------ claims

    async def claim(self) -> str:
        """Claim the current file for this session; refuse one another session has."""
        path = self.filename
        redis: aredis.Redis | None = self._redis
        if redis is None:
            return path
        await redis.hsetnx(CLAIMS_KEY, path, self.session)
        owner = await redis.hget(CLAIMS_KEY, path)
        owner_name = owner.decode() if isinstance(owner, bytes) else owner
        if owner_name != self.session:
            raise ScanSavingError(
                f"{path} is the data set file of session {owner_name!r}; two sessions never "
                "write the same file: call newdataset() or change SCAN_SAVING.collection"
            )
        return path

    async def _free_dataset(self, number: int, **fields: str) -> str:
        """The first data set name from ``number`` on whose file neither exists on disk nor is
        claimed (with ``fields`` replacing the current proposal/collection)."""
        while True:
            candidate = f"{number:04d}"
            path = self._filename_for(candidate, **fields)
            exists = await fs_call(f"checking {path}", os.path.exists, os.path.dirname(path))
            claimed = self._redis is not None and await self._redis.hexists(CLAIMS_KEY, path)
            if not exists and not claimed:
                return candidate
            number += 1

    @command
    async def newdataset(self, name: str | int | None = None) -> str:
        """Start a new data set: ``name``, or the next free number (not on disk, not claimed)."""
        if name is not None:
            self._apply({"dataset": f"{name:04d}" if isinstance(name, int) else str(name)})
        else:
            current = self._values.dataset
            start = int(current) + 1 if current.isdigit() else 1
            self._apply({"dataset": await self._free_dataset(start)})
        await self._persist()
        self._announce()
        return self._values.dataset

    @command
    async def newcollection(self, name: str | None = None) -> str:
        """Start a new collection (BLISS's sample): ``name`` (default ``sample``), its first
        free data set."""
        collection = str(name) if name is not None else DEFAULT_COLLECTION
        self._check_name(collection, "collection")
        dataset = await self._free_dataset(1, collection=collection)
        self._apply({"collection": collection, "dataset": dataset})
        await self._persist()
        self._announce()
        return collection

    @command
    async def newproposal(self, name: str | None = None) -> str:
        """Start a new proposal: ``name`` (default ``inhouse``); the collection goes back to
        ``sample`` and the data set to its first free one."""
        proposal = str(name) if name is not None else DEFAULT_PROPOSAL
        self._check_name(proposal, "proposal")
        fields = {"proposal": proposal, "collection": DEFAULT_COLLECTION}
        dataset = await self._free_dataset(1, **fields)
        self._apply({**fields, "dataset": dataset})
        await self._persist()
        self._announce()
        return proposal

    @command
    async def enddataset(self) -> str:
        """Close the current data set (its Redis keys say so: ``end_time``) and go on with the
        next free one."""
        ctx = current_context()
        if ctx.redis is not None:
            await close_dataset(shared_client(ctx.redis.data), self.root_path)
        ctx.print(f"Data set {self.root_path} closed")
        return await self.newdataset.aio(self)  # type: ignore[attr-defined]

    def _check_name(self, value: str, field: str) -> None:
        try:
            ScanSavingValues.model_validate({**self._values.model_dump(), field: value})
        except Exception as exc:
            raise ScanSavingError(f"invalid {field} {value!r}: {exc}") from None

    def _announce(self) -> None:
        """Say where the next scans go (printed in the command's output)."""
        current_context().print(f"Data path: {self.filename}")

    async def prepare(self, *, timeout: float = 5.0) -> str:
        """Before a saved scan: store pending changes, claim the file, check the directory
        (exists or can be made, writable, enough free space) in a thread with a timeout."""
        await self._persist()
        await self.claim()
        await check_directory(
            self.root_path, min_free=int(self._values.min_free_mb * 1e6), timeout=timeout
        )
        return self.filename

    def __info__(self) -> str:
        rows = [f"SCAN_SAVING of session {self.session}"]
        rows += [f"  {f:<14} {getattr(self._values, f)}" for f in ScanSaving._fields]
        rows.append(f"  {'root_path':<14} {self.root_path}")
        rows.append(f"  {'filename':<14} {self.filename}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return self.__info__()


# ---------------------------------------------------------------------------- data policy
# BLISS's commands, on the scan saving of the session that runs them. They print where the
# next scans go and return nothing (``SCAN_SAVING``'s methods return the new name).


def _scan_saving() -> ScanSaving:
    saving = current_context().scan_saving
    if saving is None:
        raise ScanSavingError("no SCAN_SAVING here: data policy commands run in a session")
    return saving


@command
async def newproposal(name: str | None = None) -> None:
    """``newproposal("blc123")``: scans go to that proposal (default ``inhouse``), collection
    ``sample``, its first free data set."""
    saving = _scan_saving()
    await saving.newproposal.aio(saving, name)  # type: ignore[attr-defined]


@command
async def newcollection(name: str | None = None) -> None:
    """``newcollection("kapton")``: scans go to that collection (the sample), first free data
    set."""
    saving = _scan_saving()
    await saving.newcollection.aio(saving, name)  # type: ignore[attr-defined]


@command
async def newsample(name: str | None = None) -> None:
    """``newsample("kapton")``: the same as ``newcollection`` (BLISS's name for it)."""
    saving = _scan_saving()
    await saving.newcollection.aio(saving, name)  # type: ignore[attr-defined]


@command
async def newdataset(name: str | int | None = None) -> None:
    """``newdataset()``: the next free data set number; ``newdataset("align")`` a named one."""
    saving = _scan_saving()
    await saving.newdataset.aio(saving, name)  # type: ignore[attr-defined]


@command
async def enddataset() -> None:
    """Close the current data set and go on with the next free one."""
    saving = _scan_saving()
    await saving.enddataset.aio(saving)  # type: ignore[attr-defined]


DATA_POLICY_COMMANDS = {
    f.__name__: f for f in (newproposal, newcollection, newsample, newdataset, enddataset)
}
