"""The HDF5/NeXus layout of a scan file and of the data set file that links the scans.

Everything here is synchronous h5py code: the writer service runs it in its own worker
thread, never on the event loop.

Files (docs/writer.md):

- a scan file per scan, ``<dataset dir>/scans/<stem>_<number:04d>.h5``, holding the entry
  ``<number>.1``: ``title``, ``start_time``, ``end_time``, ``measurement/`` (one dataset per
  channel, with units), ``instrument/`` (a group per device, positioners' start positions), an
  NXdata ``plot`` (``@signal``, ``@axes``; a 2D map for meshes) with ``@default`` leading
  down to it; camera frames stay in the camera's files, linked through a virtual dataset;
- the data set file (the document's ``path``, what users open) holding one external link
  ``/<number>.1`` per completed scan; it can always be rebuilt from the scan files.

Scan files are written with the earliest HDF5 format (no superblock status flags), so that a
file left by a killed writer opens again; readers open with ``locking=False``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from blissng.data.document import description_dtype

CHUNK_BYTES = 256 * 1024


def entry_name(document: Mapping[str, Any]) -> str:
    return f"{document['number']}.1"


def scan_file_path(document: Mapping[str, Any]) -> Path:
    """Where the scan of ``document`` is written, beside its data set file."""
    dataset_file = Path(document["path"])
    return dataset_file.parent / "scans" / f"{dataset_file.stem}_{int(document['number']):04d}.h5"


def dataset_name(channel: str) -> str:
    """HDF5 names cannot contain '/'; channel names like ``mca1:spectrum`` are kept."""
    return channel.replace("/", "_")


def iso_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).astimezone().isoformat()


def open_for_reading(path: Path | str) -> h5py.File:
    """A reader's view of a file that may still be being written."""
    return h5py.File(path, "r", locking=False)


class ScanFile:
    """One scan's file, open for writing. Not thread-safe: one worker thread uses it."""

    def __init__(self, path: Path, document: Mapping[str, Any]) -> None:
        self.path = path
        self.document = document
        self.entry = entry_name(document)
        self.file: h5py.File | None = None

    # ---------------------------------------------------------------- open / resume

    def open(self) -> dict[str, int]:
        """Create the file, or reopen the one a previous writer left. Returns the number of
        points of each channel already in it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.file = h5py.File(self.path, "a", libver="earliest", locking=False)
            if self.entry not in self.file:
                self._create_entry()
        else:
            self.file = h5py.File(self.path, "w", libver="earliest", locking=False)
            self._create_entry()
        return self.lengths()

    def _create_entry(self) -> None:
        assert self.file is not None
        doc = self.document
        self.file.attrs["NX_class"] = "NXroot"
        self.file.attrs["creator"] = "blissng"
        self.file.attrs["default"] = self.entry
        entry = self.file.create_group(self.entry)
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["blissng_scan_id"] = doc["id"]
        entry.attrs["blissng_document"] = json.dumps(doc)
        entry["title"] = doc.get("title") or doc.get("name", "")
        entry["start_time"] = iso_time(doc.get("start_time"))
        measurement = entry.create_group("measurement")
        measurement.attrs["NX_class"] = "NXcollection"
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        for description in doc["channels"].values():
            self._create_channel(measurement, description)
        self._create_instrument(instrument)

    def _create_channel(self, measurement: h5py.Group, description: Mapping[str, Any]) -> None:
        name = dataset_name(description["name"])
        dtype = description_dtype(description)
        shape = tuple(description.get("shape") or ())
        row_bytes = max(1, dtype.itemsize * int(np.prod(shape, dtype=np.int64)))
        chunk_rows = max(1, min(4096, CHUNK_BYTES // row_bytes))
        if description.get("kind") == "reference":
            # The references themselves; the frames are linked at the end (virtual dataset).
            name = f"{name}_references"
        dataset = measurement.create_dataset(
            name,
            shape=(0, *shape),
            maxshape=(None, *shape),
            dtype=dtype,
            chunks=(chunk_rows, *shape),
        )
        if description.get("unit"):
            dataset.attrs["units"] = description["unit"]
        if description.get("device"):
            dataset.attrs["device"] = description["device"]

    def _create_instrument(self, instrument: h5py.Group) -> None:
        doc = self.document
        positioners = instrument.create_group("positioners_start")
        positioners.attrs["NX_class"] = "NXcollection"
        starts = dict(doc.get("metadata", {}).get("positioners", {}))
        for motor in doc.get("motors", []):
            if "start" in motor:
                starts.setdefault(motor["name"], motor["start"])
        for name, value in starts.items():
            positioners[dataset_name(name)] = value
        motors = {m["name"] for m in doc.get("motors", [])}
        for description in doc["channels"].values():
            device = description.get("device") or description["name"]
            group = instrument.require_group(dataset_name(device))
            if "NX_class" not in group.attrs:
                group.attrs["NX_class"] = "NXpositioner" if device in motors else "NXdetector"
            target = dataset_name(description["name"])
            if description.get("kind") == "reference":
                target += "_references"
            link_name = dataset_name(description["name"].split(":")[-1])
            if link_name not in group:
                group[link_name] = h5py.SoftLink(f"/{self.entry}/measurement/{target}")

    def lengths(self) -> dict[str, int]:
        measurement = self._measurement()
        out = {}
        for description in self.document["channels"].values():
            name = dataset_name(description["name"])
            if description.get("kind") == "reference":
                name += "_references"
            out[description["name"]] = int(measurement[name].shape[0])
        return out

    def _measurement(self) -> h5py.Group:
        assert self.file is not None
        return self.file[self.entry]["measurement"]

    def _dataset(self, channel: str) -> h5py.Dataset:
        description = self.document["channels"][channel]
        name = dataset_name(channel)
        if description.get("kind") == "reference":
            name += "_references"
        return self._measurement()[name]

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

    def flush(self) -> None:
        """Flush HDF5's buffers and make them durable (the acknowledgement depends on it)."""
        assert self.file is not None
        self.file.flush()
        fd = self.file.id.get_vfd_handle()
        os.fsync(fd)

    def finish(self, end_time: float | None, end_reason: str, error: str | None) -> None:
        """End time, end reason and the default plot; then flush."""
        assert self.file is not None
        entry = self.file[self.entry]
        if "end_time" not in entry:
            entry["end_time"] = iso_time(end_time)
        entry.attrs["end_reason"] = end_reason
        if error:
            entry.attrs["error"] = error
        self._link_frames(entry)
        self._create_plot(entry)
        self.flush()

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
            name = dataset_name(description["name"])
            if name in measurement:
                continue
            references = measurement[f"{name}_references"][()]
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
        plot[dataset_name(signal)] = h5py.SoftLink(
            f"/{self.entry}/measurement/{dataset_name(signal)}"
        )
        plot.attrs["signal"] = dataset_name(signal)
        if axes:
            axis = axes[0]
            plot[dataset_name(axis)] = h5py.SoftLink(
                f"/{self.entry}/measurement/{dataset_name(axis)}"
            )
            plot.attrs["axes"] = [dataset_name(axis)]

    def _create_map(
        self,
        plot: h5py.Group,
        measurement: h5py.Group,
        signal: str,
        axes: Sequence[str],
        grid: tuple[int, int],
    ) -> None:
        """A 2D map (slow, fast) of the first counter over a mesh (small: a copy)."""
        fast_name, slow_name = axes
        n_fast = grid[0]
        values = measurement[dataset_name(signal)][()]
        fast = measurement[dataset_name(fast_name)][()]
        slow = measurement[dataset_name(slow_name)][()]
        rows = len(values) // n_fast
        if rows == 0:
            return
        values = values[: rows * n_fast].reshape(rows, n_fast)
        fast = fast[: rows * n_fast].reshape(rows, n_fast)
        order = np.argsort(fast, axis=1)  # back-and-forth rows are stored reversed
        values = np.take_along_axis(values, order, axis=1)
        plot[dataset_name(signal)] = values
        plot[dataset_name(fast_name)] = np.take_along_axis(fast, order, axis=1)[0]
        plot[dataset_name(slow_name)] = slow[: rows * n_fast : n_fast]
        plot.attrs["signal"] = dataset_name(signal)
        plot.attrs["axes"] = [dataset_name(slow_name), dataset_name(fast_name)]


def plot_channels(document: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """The first counter and the scanned motors' channels (fast axis first)."""
    channels = document["channels"]
    motor_names = [m["name"] for m in document.get("motors", [])]
    axes = [name for name in motor_names if name in channels]
    skip = set(axes) | {"elapsed_time", "epoch", "timer:elapsed_time", "timer:epoch"}
    for name, description in channels.items():
        if name in skip or name.split(":")[-1] in {"elapsed_time", "epoch"}:
            continue
        if description.get("kind") == "reference" or description.get("shape"):
            continue
        return name, axes
    return None, axes


def mesh_shape(document: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(n_fast, n_slow)`` for a mesh scan whose motors carry their ``npoints``."""
    grid = document.get("metadata", {}).get("grid")
    if grid and len(grid) == 2:
        return int(grid[0]), int(grid[1])
    if document.get("name") in ("amesh", "dmesh"):
        motors = document.get("motors", [])
        if len(motors) == 2 and all("npoints" in m for m in motors):
            return int(motors[0]["npoints"]), int(motors[1]["npoints"])
    return None


# -------------------------------------------------------------------- the data set file


def link_scan(dataset_file: Path, scan_file: Path, entry: str) -> None:
    """Add ``/<entry>`` -> scan file (an external link, relative so the folder can move)."""
    dataset_file.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(scan_file, dataset_file.parent)
    with h5py.File(dataset_file, "a", libver="earliest", locking=False) as master:
        master.attrs["NX_class"] = "NXroot"
        master.attrs["creator"] = "blissng"
        if entry not in master:
            master[entry] = h5py.ExternalLink(relative, f"/{entry}")
        master.attrs["default"] = entry
        master.flush()


def completed_scans(dataset_file: Path) -> Iterator[tuple[Path, str]]:
    """The scan files next to a data set file that hold a finished entry."""
    folder = dataset_file.parent / "scans"
    for path in sorted(folder.glob(f"{dataset_file.stem}_*.h5")):
        try:
            with open_for_reading(path) as scan:
                for name, entry in scan.items():
                    if isinstance(entry, h5py.Group) and "end_time" in entry:
                        yield path, name
        except OSError:
            continue  # a scan file being written or damaged: not linked


def rebuild_dataset_file(dataset_file: Path) -> int:
    """Recreate the data set file from its scan files; returns the number of scans linked."""
    partial = dataset_file.with_suffix(".rebuild.h5")
    partial.unlink(missing_ok=True)
    count = 0
    for scan_file, entry in sorted(
        completed_scans(dataset_file), key=lambda item: float(item[1].split(".")[0])
    ):
        link_scan(partial, scan_file, entry)
        count += 1
    if count:
        os.replace(partial, dataset_file)
    return count
