"""Where a scan's file is, whose it is, and the data set file that links the scans.

The names and places of docs/writer.md, for the writer and for readers (the file fallback,
users): a scan file per scan, ``<dataset dir>/scans/<stem>_<number:04d>.h5``, holding the
entry ``<number>.1``; a scan file is bound to its scan (its entry's ``@blissng_scan_id``) and
never reused: if the name is another scan's, the scan goes to
``<stem>_<number:04d>_<scan id>.h5`` (:func:`choose_scan_file`). The data set file (the
document's ``path``, what users open) holds one external link per completed scan and can
always be rebuilt from the scan files (:func:`rebuild_dataset_file`).

What is inside a scan file is ``_nexus``'s. Blocking h5py and file-system code: the writer
runs it in worker threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py

from blissng.data import channel_label, nexus_name, scan_file_name

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def entry_name(document: Mapping[str, Any]) -> str:
    return f"{document['number']}.1"


def scan_file_path(document: Mapping[str, Any]) -> Path:
    """Where the scan of ``document`` is written, beside its data set file (unless another
    scan's file holds that name: :func:`choose_scan_file`)."""
    return scan_file_name(document["path"], int(document["number"]))


def alternative_path(document: Mapping[str, Any]) -> Path:
    """The scan's file when its usual name is another scan's: the scan id added."""
    primary = scan_file_path(document)
    return primary.with_name(f"{primary.stem}_{nexus_name(str(document['id']))}.h5")


def file_owner(path: Path, entry: str) -> str | None:
    """The scan id a scan file belongs to: its entry ``entry``'s, else any scan entry's; None
    when there is no file, an empty one (never written) or one without a scan in it. A file
    that is not HDF5 (damaged) gives ``""``. Blocking (a dead mount blocks here, outside
    HDF5's lock: the first bytes are read with plain file I/O)."""
    try:
        with open(path, "rb") as raw:
            signature = raw.read(len(HDF5_SIGNATURE))
    except FileNotFoundError:
        return None
    if not signature:
        return None
    if signature != HDF5_SIGNATURE:
        return ""
    try:
        with open_for_reading(path) as f:
            if entry in f:
                return str(f[entry].attrs.get("blissng_scan_id", ""))
            for group in f.values():
                owner = (
                    group.attrs.get("blissng_scan_id") if isinstance(group, h5py.Group) else None
                )
                if owner is not None:
                    return str(owner)
    except OSError:
        return ""
    return None


def choose_scan_file(document: Mapping[str, Any]) -> Path:
    """The file the scan of ``document`` is written to: its usual name, unless that is another
    scan's file (never reused), then :func:`alternative_path`. Blocking."""
    entry = entry_name(document)
    primary = scan_file_path(document)
    if file_owner(primary, entry) in (None, "", document["id"]):
        return primary
    return alternative_path(document)


def find_scan_file(document: Mapping[str, Any]) -> Path | None:
    """The file holding the scan of ``document`` (for readers), or None. Blocking."""
    entry = entry_name(document)
    for path in (scan_file_path(document), alternative_path(document)):
        if file_owner(path, entry) == document["id"]:
            return path
    return None


def measurement_name(document: Mapping[str, Any], channel: str) -> str:
    """The dataset of ``channel`` in ``measurement/``: its label (``m1``, ``diode``: what users
    typed, a name NeXus tools accept); a camera's references get ``<label>_references`` (the
    label itself names the virtual dataset of its frames)."""
    name = channel_label(document, channel)
    if document["channels"][channel].get("kind") == "reference":
        name += "_references"
    return name


def open_for_reading(path: Path | str) -> h5py.File:
    """A reader's view of a file that may still be being written."""
    return h5py.File(path, "r", locking=False)


# -------------------------------------------------------------------- the data set file


def link_scan(dataset_file: Path, scan_file: Path, entry: str, scan_id: str = "") -> str:
    """Add ``/<entry>`` -> scan file (an external link, relative so the folder can move).

    If ``/<entry>`` already links another file (another scan of the same number), the link is
    ``/<entry>_<scan id>``: a link is never redirected. Returns the link's name."""
    dataset_file.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(scan_file, dataset_file.parent)
    with h5py.File(dataset_file, "a", libver="earliest", locking=False) as master:
        master.attrs["NX_class"] = "NXroot"
        master.attrs["creator"] = "blissng"
        name = entry
        existing = master.get(name, getlink=True)
        if isinstance(existing, h5py.ExternalLink) and existing.filename != relative:
            name = f"{entry}_{nexus_name(scan_id)}" if scan_id else f"{entry}_{scan_file.stem}"
            existing = master.get(name, getlink=True)
        if existing is None:
            master[name] = h5py.ExternalLink(relative, f"/{entry}")
        master.attrs["default"] = name
        master.flush()
    return name


def completed_scans(dataset_file: Path) -> Iterator[tuple[Path, str, str]]:
    """``(file, entry, scan id)`` of the scan files next to a data set file that hold a
    finished entry."""
    folder = dataset_file.parent / "scans"
    for path in sorted(folder.glob(f"{dataset_file.stem}_*.h5")):
        try:
            with open_for_reading(path) as scan:
                for name, entry in scan.items():
                    if isinstance(entry, h5py.Group) and "end_time" in entry:
                        yield path, name, str(entry.attrs.get("blissng_scan_id", ""))
        except OSError:
            continue  # a scan file being written or damaged: not linked


def rebuild_dataset_file(dataset_file: Path) -> int:
    """Recreate the data set file from its scan files; returns the number of scans linked."""
    partial = dataset_file.with_suffix(".rebuild.h5")
    partial.unlink(missing_ok=True)
    count = 0
    for scan_file, entry, scan_id in sorted(
        completed_scans(dataset_file), key=lambda item: (float(item[1].split(".")[0]), item[0])
    ):
        link_scan(partial, scan_file, entry, scan_id)
        count += 1
    if count:
        os.replace(partial, dataset_file)
    return count
