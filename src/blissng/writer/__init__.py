"""The HDF5/NeXus writer: a service following scans in Redis (``blissng writer``).

:class:`WriterService` (its process: ``python -m blissng.writer``, which the server's
supervisor runs) writes each saved scan to a file of its own, linked from the data set file
(docs/writer.md); it reports what it cannot write on ``EVENTS_STREAM``. For readers: where a
scan's file is (:func:`scan_file_path`, :func:`find_scan_file`), its entry and datasets
(:func:`entry_name`, :func:`measurement_name`), and :func:`install`, the file fallback the
data layer's readers use for what Redis no longer has.
"""

from ._errors import FileSystemStuck, ForeignScanFile, WriterError
from ._file_fallback import FileFallback, install
from ._files import (
    entry_name,
    find_scan_file,
    measurement_name,
    rebuild_dataset_file,
    scan_file_path,
)
from ._nexus import ScanFile
from ._scan import EVENTS_STREAM, ScanWriter
from ._service import WriterService, run_writer

__all__ = [
    "EVENTS_STREAM",
    "FileFallback",
    "FileSystemStuck",
    "ForeignScanFile",
    "ScanFile",
    "ScanWriter",
    "WriterError",
    "WriterService",
    "entry_name",
    "find_scan_file",
    "install",
    "measurement_name",
    "rebuild_dataset_file",
    "run_writer",
    "scan_file_path",
]
