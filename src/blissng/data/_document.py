"""The scan document: what a scan is, as stored in ``blissng:scan:<id>`` (docs/data-model.md).

It is also THE place that maps devices to channels: each motor entry names the channel of its
positions (``"channel": "axis:m1"``), each channel carries its ``role`` (axis, time, counter)
and its ``label`` (the short name users typed and NeXus accepts: ``m1``, ``diode``; a prefix
only where two would collide). The writer, the plots and ``cen()`` read them with the helpers
below (:func:`axis_channels`, :func:`counter_channels`, :func:`find_channel`) and never guess
from a channel's name.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from blissng.acquisition import REFERENCE_DTYPE, ChannelSpec

from . import _keys as keys

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
        specs = list(specs)
        labels = channel_labels([spec.name for spec in specs])
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
            "motors": [_with_channel(motor, specs) for motor in self.motors],
            "metadata": self.metadata,
            "retention": self.retention.to_dict(),
            "channels": {
                spec.name: channel_description(self.id, spec, labels[spec.name]) for spec in specs
            },
        }


def _with_channel(motor: Mapping[str, Any], specs: Sequence[ChannelSpec]) -> dict[str, Any]:
    """A motor entry naming the channel of its positions (the "axis" channel of its device)."""
    entry = dict(motor)
    if not entry.get("channel"):
        entry["channel"] = next(
            (s.name for s in specs if s.role == "axis" and s.device == entry.get("name")), None
        )
    return entry


def spec_dtype(spec: ChannelSpec) -> np.dtype[Any]:
    """The numpy dtype of one stored point's elements."""
    if spec.kind == "reference":
        return REFERENCE_DTYPE
    return np.dtype(spec.dtype)


def dtype_string(spec: ChannelSpec) -> str:
    if spec.kind == "reference":
        return "reference"
    return np.dtype(spec.dtype).str


def channel_description(
    scan_id: str, spec: ChannelSpec, label: str | None = None
) -> dict[str, Any]:
    description = spec.to_dict()
    description["key"] = keys.channel_key(scan_id, spec.name)
    description["dtype"] = dtype_string(spec)
    description["label"] = label or nexus_name(spec.name)
    return description


def description_dtype(description: Mapping[str, Any]) -> np.dtype[Any]:
    """The numpy dtype of a channel described in a scan document."""
    if description.get("kind") == "reference" or description["dtype"] == "reference":
        return REFERENCE_DTYPE
    return np.dtype(description["dtype"])


def now() -> float:
    return time.time()


# -------------------------------------------------------------------- names and roles

_NOT_NEXUS = re.compile(r"[^A-Za-z0-9_.]")


def nexus_name(text: str) -> str:
    """``text`` as a name NeXus tools accept (letters, digits, ``_``, ``.``): ``:`` -> ``_``."""
    return _NOT_NEXUS.sub("_", text) or "_"


def channel_labels(names: Sequence[str]) -> dict[str, str]:
    """Each channel's label: the short name users typed (``simct:diode`` -> ``diode``,
    ``axis:m1`` -> ``m1``), or, only where two short names collide, the full name made a NeXus
    name (``simct_diode``). Labels are unique within a scan (as dataset names must be)."""
    shorts = {name: nexus_name(name.rsplit(":", 1)[-1]) for name in names}
    count: dict[str, int] = {}
    for short in shorts.values():
        count[short] = count.get(short, 0) + 1
    labels: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        label = shorts[name] if count[shorts[name]] == 1 else nexus_name(name)
        base, n = label, 1
        while label in taken:  # two full names equal once made NeXus names
            n += 1
            label = f"{base}_{n}"
        taken.add(label)
        labels[name] = label
    return labels


def channel_role(description: Mapping[str, Any]) -> str:
    """``axis``, ``time`` or ``counter`` (a document without roles: everything is a counter)."""
    return str(description.get("role") or "counter")


def channel_label(document: Mapping[str, Any], channel: str) -> str:
    """The label of ``channel`` (its dataset name in a file, its name in a table or a plot)."""
    channels = document.get("channels", {})
    label = (channels.get(channel) or {}).get("label")
    if label:
        return str(label)
    # A document written without labels: the labels it would have had.
    return channel_labels([*channels] if channel in channels else [channel])[channel]


def axis_channels(document: Mapping[str, Any]) -> list[str]:
    """The channels of the scanned motors' positions, in the order of ``motors`` (the fast
    axis first for a mesh)."""
    channels = document.get("channels", {})
    return [
        str(motor["channel"])
        for motor in document.get("motors", [])
        if motor.get("channel") in channels
    ]


def time_channels(document: Mapping[str, Any]) -> list[str]:
    """The scalar channels of a master's clock (``timer:elapsed_time`` first, then the
    epoch): what a scan without motors (``loopscan``, ``timescan``) is plotted against."""
    return [
        str(name)
        for name, description in document.get("channels", {}).items()
        if channel_role(description) == "time" and not description.get("shape")
    ]


def counter_channels(document: Mapping[str, Any], *, ndim: int | None = 0) -> list[str]:
    """The channels of what the detectors measured, in order: numeric data (not frame
    references) of ``ndim`` dimensions per point (0: scalars, 1: spectra; None: any)."""
    found = []
    for name, description in document.get("channels", {}).items():
        if channel_role(description) != "counter" or description.get("kind") == "reference":
            continue
        if ndim is not None and len(description.get("shape") or ()) != ndim:
            continue
        found.append(str(name))
    return found


def find_channel(document: Mapping[str, Any], wanted: Any) -> str:
    """The channel a user means: a full channel name, a label (``diode``), a motor's name, or
    an object with a ``name`` (a counter, a motor). ``KeyError`` names the choices."""
    channels = document.get("channels", {})
    text = wanted if isinstance(wanted, str) else getattr(wanted, "name", str(wanted))
    if text in channels:
        return str(text)
    for motor in document.get("motors", []):
        if motor.get("name") == text and motor.get("channel") in channels:
            return str(motor["channel"])
    for name in channels:
        if channel_label(document, name) == text:
            return str(name)
    matches = [str(name) for name in channels if name.rsplit(":", 1)[-1] == text]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(channel_label(document, n) for n in channels)
        raise KeyError(f"no channel {text!r} in this scan; it has {known}")
    raise KeyError(f"{text!r} is ambiguous: {', '.join(matches)}; give the full name")
