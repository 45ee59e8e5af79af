"""The HDF5/NeXus layout of a scan file: what its entry holds, written and finished.

Everything here is synchronous h5py code: the writer service runs it in its own worker
thread, never on the event loop. Where the files are, whose they are and the data set file
that links them are ``_files``'s.

A scan file's entry ``<number>.1`` (docs/writer.md) holds ``title``, ``start_time``,
``end_time``, ``measurement/`` (one dataset per channel, with units), ``instrument/`` (a group
per device, positioners' start positions), an NXdata ``plot`` (``@signal``, ``@axes``: the
scanned motors, or the elapsed time in a scan without motors; a 2D map for meshes) with
``@default`` leading down to it; camera frames stay in the camera's files, linked through a
virtual dataset.

Scan files are written with the earliest HDF5 format (no superblock status flags), so that a
file left by a killed writer opens again; readers open with ``locking=False``. A scan file is
bound to its scan: its entry carries ``@blissng_scan_id``, and a file (or an entry) of another
scan is never reused.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from blissng.data import (
    axis_channels,
    channel_label,
    channel_role,
    counter_channels,
    description_dtype,
    nexus_name,
    release_reservation,
    time_channels,
)

from ._errors import ForeignScanFile
from ._files import entry_name, file_owner, measurement_name, open_for_reading

CHUNK_BYTES = 256 * 1024
JOIN_BYTES = 64 * 1024  # parts smaller than this (on average) are joined before writing
WRITEBACK_BYTES = 2**20  # a write call this big starts the kernel's writeback at once


def chunk_shape(dtype: np.dtype[Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The chunks of a channel's dataset: whole points, about :data:`CHUNK_BYTES` (at most
    4096 points), so that appending a batch touches few chunks and a reader of a few points
    reads little."""
    row_bytes = max(1, dtype.itemsize * int(np.prod(shape, dtype=np.int64)))
    return (max(1, min(4096, CHUNK_BYTES // row_bytes)), *shape)


def iso_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).astimezone().isoformat()


class ScanFile:
    """One scan's file, open for writing. Not thread-safe: one worker thread uses it."""

    def __init__(self, path: Path, document: Mapping[str, Any]) -> None:
        self.path = path
        self.document = document
        self.entry = entry_name(document)
        self.file: h5py.File | None = None

    # ---------------------------------------------------------------- open / resume

    def open(self) -> dict[str, int]:
        """Create the file, or reopen the one a previous writer left for this scan. Returns
        the number of points of each channel already in it. :class:`ForeignScanFile` if the
        file holds another scan (it is left untouched)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = file_owner(self.path, self.entry)
        if owner not in (None, self.document["id"]):
            if owner == "":
                raise OSError(f"unable to open {self.path}: not an HDF5 file (damaged)")
            raise ForeignScanFile(self.path, owner)
        if owner is None:
            # New, or empty, or a file a killed writer left before its entry existed.
            mode = "a" if self.path.exists() and self.path.stat().st_size else "w"
        else:
            mode = "a"
        self.file = h5py.File(self.path, mode, libver="earliest", locking=False)
        # Always: a writer stopped while it created the entry (SIGTERM as a scan is aborted,
        # a killed process, an error half-way) left it owned but without all its datasets.
        self._complete_entry()
        release_reservation(self.document["path"], int(self.document["number"]))
        return self.lengths()

    def _complete_entry(self) -> None:
        """Create the scan's entry, or whatever part of it is missing: each step is skipped
        when done already, so an entry left half-made is completed, not taken as whole (its
        missing datasets raised KeyError ever after, on every try to write the scan)."""
        assert self.file is not None
        doc = self.document
        self.file.attrs["NX_class"] = "NXroot"
        self.file.attrs["creator"] = "blissng"
        self.file.attrs["default"] = self.entry
        entry = self.file.require_group(self.entry)
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["blissng_scan_id"] = doc["id"]
        entry.attrs["blissng_document"] = json.dumps(doc)
        if "title" not in entry:
            entry["title"] = doc.get("title") or doc.get("name", "")
        if "start_time" not in entry:
            entry["start_time"] = iso_time(doc.get("start_time"))
        measurement = entry.require_group("measurement")
        measurement.attrs["NX_class"] = "NXcollection"
        instrument = entry.require_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        for description in doc["channels"].values():
            if measurement_name(doc, description["name"]) not in measurement:
                self._create_channel(measurement, description)
        self._create_instrument(instrument)

    def _create_channel(self, measurement: h5py.Group, description: Mapping[str, Any]) -> None:
        # A camera's references themselves; its frames are linked at the end (virtual dataset).
        name = measurement_name(self.document, description["name"])
        dtype = description_dtype(description)
        shape = tuple(description.get("shape") or ())
        dataset = measurement.create_dataset(
            name,
            shape=(0, *shape),
            maxshape=(None, *shape),
            dtype=dtype,
            chunks=chunk_shape(dtype, shape),
        )
        dataset.attrs["channel"] = description["name"]  # the full channel name, as in Redis
        if description.get("unit"):
            dataset.attrs["units"] = description["unit"]
        if description.get("device"):
            dataset.attrs["device"] = description["device"]

    def _create_instrument(self, instrument: h5py.Group) -> None:
        doc = self.document
        positioners = instrument.require_group("positioners_start")
        positioners.attrs["NX_class"] = "NXcollection"
        starts = dict(doc.get("metadata", {}).get("positioners", {}))
        for motor in doc.get("motors", []):
            if "start" in motor:
                starts.setdefault(motor["name"], motor["start"])
        for name, value in starts.items():
            if value is not None and nexus_name(name) not in positioners:
                positioners[nexus_name(name)] = value
        for description in doc["channels"].values():
            device = description.get("device") or description["name"]
            group = instrument.require_group(nexus_name(device))
            axis = channel_role(description) == "axis"
            if "NX_class" not in group.attrs:
                group.attrs["NX_class"] = "NXpositioner" if axis else "NXdetector"
            # An NXpositioner's positions are its "value"; a detector's data keep their names.
            link_name = "value" if axis else nexus_name(description["name"].rsplit(":", 1)[-1])
            if link_name not in group:
                target = measurement_name(doc, description["name"])
                group[link_name] = h5py.SoftLink(f"/{self.entry}/measurement/{target}")

    def lengths(self) -> dict[str, int]:
        measurement = self._measurement()
        return {
            channel: int(measurement[measurement_name(self.document, channel)].shape[0])
            for channel in self.document["channels"]
        }

    def _measurement(self) -> h5py.Group:
        assert self.file is not None
        return self.file[self.entry]["measurement"]

    def _dataset(self, channel: str) -> h5py.Dataset:
        return self._measurement()[measurement_name(self.document, channel)]

    # ---------------------------------------------------------------- writing

    def truncate(self, channel: str, length: int) -> None:
        """Drop points past ``length`` (resuming from what was acknowledged)."""
        dataset = self._dataset(channel)
        if dataset.shape[0] > length:
            dataset.resize(length, axis=0)

    def write(self, channel: str, index: int, batch: np.ndarray) -> int:
        """Write points ``index .. index+n-1``; returns the channel's new length."""
        dataset = self._dataset(channel)
        end = index + len(batch)
        if dataset.shape[0] < end:
            dataset.resize(end, axis=0)
        dataset[index:end] = batch
        return end

    def write_raw(self, batches: Mapping[str, tuple[int, Sequence[bytes]]]) -> dict[str, int]:
        """Several channels at once, as the stream entries carry them (raw bytes, C order):
        ``{channel: (index of the first point, [bytes, ...])}``. Returns each channel's new
        length. Each dataset is resized once; small parts are joined into one write, large
        ones written as they are (no copy)."""
        lengths = {}
        written = 0
        for channel, (index, parts) in batches.items():
            if not parts:
                continue
            description = self.document["channels"][channel]
            dtype = description_dtype(description)
            shape = tuple(description.get("shape") or ())
            row = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
            total = sum(len(part) for part in parts)
            end = index + total // row
            dataset = self._dataset(channel)
            if dataset.shape[0] < end:
                dataset.resize(end, axis=0)
            if total < JOIN_BYTES * len(parts):
                parts = [b"".join(parts)] if len(parts) > 1 else parts
            start = index
            for part in parts:
                points = np.frombuffer(part, dtype).reshape(-1, *shape)
                dataset[start : start + len(points)] = points
                start += len(points)
            lengths[channel] = end
            written += total
        if written >= WRITEBACK_BYTES:
            self._start_writeback()
        return lengths

    def _start_writeback(self) -> None:
        """Have the kernel start writing what is in the page cache now, without waiting
        (``POSIX_FADV_DONTNEED`` starts the writeback of dirty pages): disk I/O overlaps the
        next reads from Redis, and the ``fsync`` before an acknowledgement has little left."""
        if self.file is not None and hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                os.posix_fadvise(self.file.id.get_vfd_handle(), 0, 0, os.POSIX_FADV_DONTNEED)

    def flush(self) -> None:
        """Flush HDF5's buffers and make them durable (the acknowledgement depends on it)."""
        assert self.file is not None
        self.file.flush()
        fd = self.file.id.get_vfd_handle()
        os.fsync(fd)

    def finish(
        self,
        end_time: float | None,
        end_reason: str,
        error: str | None,
        lost: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    ) -> None:
        """End time, end reason (and why, if it did not succeed), the points known lost, the
        default plot; then flush. Finishing again (a scan resumed after it was ended as
        interrupted) replaces the end."""
        assert self.file is not None
        entry = self.file[self.entry]
        if "end_time" in entry:
            del entry["end_time"]
        entry["end_time"] = iso_time(end_time)
        entry.attrs["end_reason"] = end_reason
        if error:
            entry.attrs["error"] = error
        elif "error" in entry.attrs:
            del entry.attrs["error"]
        self.mark_lost(lost or {})
        self._link_frames(entry)
        self._create_plot(entry)
        self.flush()

    def mark_lost(self, lost: Mapping[str, Sequence[tuple[int, int]]]) -> None:
        """List the points written as filler, ``[start, stop)`` ranges, in their datasets'
        ``@lost_points``."""
        for channel, ranges in lost.items():
            if ranges:
                self._dataset(channel).attrs["lost_points"] = np.asarray(ranges, dtype="i8")

    def lost_points(self) -> dict[str, list[tuple[int, int]]]:
        """What :meth:`mark_lost` listed (an earlier writer of this file), per channel."""
        found = {}
        for channel in self.document["channels"]:
            ranges = self._dataset(channel).attrs.get("lost_points")
            if ranges is not None:
                found[channel] = [(int(start), int(stop)) for start, stop in ranges]
        return found

    def close(self) -> None:
        if self.file is not None:
            with contextlib.suppress(Exception):
                self.file.close()
            self.file = None

    # ---------------------------------------------------------------- frames and plot

    def _link_frames(self, entry: h5py.Group) -> None:
        """A virtual dataset per camera channel pointing at the frames in the camera's files."""
        measurement = entry["measurement"]
        for description in self.document["channels"].values():
            if description.get("kind") != "reference":
                continue
            name = channel_label(self.document, description["name"])
            if name in measurement:
                continue
            references = measurement[measurement_name(self.document, description["name"])][()]
            if len(references) == 0:
                continue
            frame_shape, frame_dtype = self._frame_layout(description, references[0])
            if frame_shape is None:
                continue
            layout = h5py.VirtualLayout(shape=(len(references), *frame_shape), dtype=frame_dtype)
            for i, ref in enumerate(references):
                file = ref["file"].decode()
                source = h5py.VirtualSource(
                    file, ref["dataset"].decode(), shape=(int(ref["index"]) + 1, *frame_shape)
                )
                layout[i] = source[int(ref["index"])]
            measurement.create_virtual_dataset(name, layout, fillvalue=0)

    @staticmethod
    def _frame_layout(
        description: Mapping[str, Any], first: np.void
    ) -> tuple[tuple[int, ...] | None, np.dtype[Any]]:
        shape = description.get("frame_shape")
        dtype = description.get("frame_dtype")
        if shape and dtype:
            return tuple(shape), np.dtype(dtype)
        try:  # ask the camera's file
            with open_for_reading(first["file"].decode()) as source:
                dataset = source[first["dataset"].decode()]
                return tuple(dataset.shape[1:]), dataset.dtype
        except (OSError, KeyError):
            return None, np.dtype("u2")

    def _create_plot(self, entry: h5py.Group) -> None:
        """NXdata ``plot``: the first counter against the scanned motor(s)."""
        if "plot" in entry:
            return
        signal, axes = plot_channels(self.document)
        entry.attrs["default"] = "plot"
        plot = entry.create_group("plot")
        plot.attrs["NX_class"] = "NXdata"
        if signal is None:
            return
        measurement = entry["measurement"]
        grid = mesh_shape(self.document)
        if grid is not None and len(axes) == 2:
            self._create_map(plot, measurement, signal, axes, grid)
            return
        label = channel_label(self.document, signal)
        plot[label] = h5py.SoftLink(f"/{self.entry}/measurement/{label}")
        plot.attrs["signal"] = label
        if axes:
            axis = channel_label(self.document, axes[0])
            plot[axis] = h5py.SoftLink(f"/{self.entry}/measurement/{axis}")
            plot.attrs["axes"] = [axis]

    def _create_map(
        self,
        plot: h5py.Group,
        measurement: h5py.Group,
        signal: str,
        axes: Sequence[str],
        grid: tuple[int, int],
    ) -> None:
        """A 2D map (slow, fast) of the first counter over a mesh (small: a copy)."""
        signal, fast_name, slow_name = (
            channel_label(self.document, name) for name in (signal, *axes)
        )
        n_fast = grid[0]
        values = measurement[signal][()]
        fast = measurement[fast_name][()]
        slow = measurement[slow_name][()]
        rows = min(len(values), len(fast), len(slow)) // n_fast
        if rows == 0:
            return
        values = values[: rows * n_fast].reshape(rows, n_fast)
        fast = fast[: rows * n_fast].reshape(rows, n_fast)
        order = np.argsort(fast, axis=1)  # back-and-forth rows are stored reversed
        values = np.take_along_axis(values, order, axis=1)
        plot[signal] = values
        plot[fast_name] = np.take_along_axis(fast, order, axis=1)[0]
        plot[slow_name] = slow[: rows * n_fast : n_fast]
        plot.attrs["signal"] = signal
        plot.attrs["axes"] = [slow_name, fast_name]


def plot_channels(document: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """The default plot's channels: the first scalar counter and the scanned motors' channels
    (fast axis first), as the scan document names them; in a scan without motors
    (``loopscan``, ``timescan``), the master's elapsed time (as BLISS plots them; the point
    index tells a viewer nothing)."""
    counters = counter_channels(document, ndim=0)
    axes = axis_channels(document) or time_channels(document)[:1]
    return (counters[0] if counters else None), axes


def mesh_shape(document: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(n_fast, n_slow)`` of a mesh: the scans layer's ``scan_info["mesh"]["shape"]``
    (``[n_slow, n_fast]``, as ``amesh``/``dmesh`` give it), else motors with ``npoints``."""
    metadata = document.get("metadata") or {}
    mesh = (metadata.get("scan_info") or {}).get("mesh") or {}
    shape = mesh.get("shape") if isinstance(mesh, Mapping) else None
    if shape and len(shape) == 2:
        return int(shape[1]), int(shape[0])
    grid = metadata.get("grid")
    if grid and len(grid) == 2:
        return int(grid[0]), int(grid[1])
    if document.get("name") in ("amesh", "dmesh"):
        motors = document.get("motors", [])
        if len(motors) == 2 and all("npoints" in m for m in motors):
            return int(motors[0]["npoints"]), int(motors[1]["npoints"])
    return None
