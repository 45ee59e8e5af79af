"""The HDF5/NeXus writer: a service following scans in Redis (``blissng writer``)."""

from .fallback import FileFallback, install
from .nexus import ScanFile, rebuild_dataset_file, scan_file_path
from .service import EVENTS_STREAM, ScanWriter, WriterError, WriterService, run_writer

__all__ = [
    "EVENTS_STREAM",
    "FileFallback",
    "ScanFile",
    "ScanWriter",
    "WriterError",
    "WriterService",
    "install",
    "rebuild_dataset_file",
    "run_writer",
    "scan_file_path",
]
