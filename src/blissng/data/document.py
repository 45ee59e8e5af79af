"""The scan document: what a scan is, as stored in ``blissng:scan:<id>`` (docs/data-model.md)."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from blissng.acquisition.channels import REFERENCE_DTYPE, ChannelSpec

from . import keys

STATES = ("created", "prepared", "started", "stopped", "closed")
END_REASONS = ("success", "aborted", "failed")


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long a scan stays in Redis once it no longer needs to (seconds).

    ``written_ttl`` starts when the writer marks a saved scan written, ``unsaved_ttl`` when an
    unsaved scan closes; ``dataset_ttl`` is refreshed on the data set keys at each scan.
    Per session: the scans layer passes the session's setting.
    """

    written_ttl: int = 300
    unsaved_ttl: int = 300
    dataset_ttl: int = 86_400

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"retention {field.name} must be a positive number of seconds, got {value!r}"
                )

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ScanDocument:
    """Identity and description of a scan, given by the scans layer to the publisher.

    The publisher adds ``id`` (if empty), ``start_time`` and ``channels`` (from the specs).
    """

    session: str
    number: int
    name: str
    title: str = ""
    dataset: str | None = None
    path: str | None = None
    save: bool = True
    npoints: int | None = None
    motors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    retention: Retention = dataclasses.field(default_factory=Retention)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.session or any(c.isspace() for c in self.session):
            raise ValueError(f"scan document: session name {self.session!r} is empty or has spaces")
        if not self.id:
            self.id = f"{self.session}-{self.number}-{secrets.token_hex(4)}"
        if any(c.isspace() for c in self.id):
            raise ValueError(f"scan id {self.id!r} must not contain whitespace")
        if self.save and not self.dataset:
            # A saved scan belongs to a data set; fall back on its file path.
            self.dataset = self.path
        if isinstance(self.retention, Mapping):
            self.retention = Retention(**self.retention)

    @classmethod
    def from_any(cls, value: ScanDocument | Mapping[str, Any]) -> ScanDocument:
        if isinstance(value, ScanDocument):
            return value
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(
                f"scan document: unknown fields {sorted(unknown)}; put free-form data in 'metadata'"
            )
        return cls(**value)

    def to_json_dict(self, specs: Iterable[ChannelSpec], start_time: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "session": self.session,
            "number": self.number,
            "name": self.name,
            "title": self.title,
            "dataset": self.dataset if self.save else None,
            "path": self.path if self.save else None,
            "save": self.save,
            "npoints": self.npoints,
            "start_time": start_time,
            "motors": self.motors,
            "metadata": self.metadata,
            "retention": self.retention.to_dict(),
            "channels": {spec.name: channel_description(self.id, spec) for spec in specs},
        }


def spec_dtype(spec: ChannelSpec) -> np.dtype[Any]:
    """The numpy dtype of one stored point's elements."""
    if spec.kind == "reference":
        return REFERENCE_DTYPE
    return np.dtype(spec.dtype)


def dtype_string(spec: ChannelSpec) -> str:
    if spec.kind == "reference":
        return "reference"
    return np.dtype(spec.dtype).str


def channel_description(scan_id: str, spec: ChannelSpec) -> dict[str, Any]:
    description = spec.to_dict()
    description["key"] = keys.channel_key(scan_id, spec.name)
    description["dtype"] = dtype_string(spec)
    return description


def description_dtype(description: Mapping[str, Any]) -> np.dtype[Any]:
    """The numpy dtype of a channel described in a scan document."""
    if description.get("kind") == "reference" or description["dtype"] == "reference":
        return REFERENCE_DTYPE
    return np.dtype(description["dtype"])


def now() -> float:
    return time.time()
