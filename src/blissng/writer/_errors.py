"""Why the writer cannot write a scan (reported on the scan's ack ``error`` and to its session)."""

from __future__ import annotations

from blissng.errors import BlissngError


class WriterError(BlissngError, RuntimeError):
    """A scan cannot be written (disk full, no permission, a damaged file)."""


class FileSystemStuck(WriterError):
    """A call to a file system did not return in time (a dead network mount?)."""

    def __init__(self, file_system: str, message: str) -> None:
        super().__init__(message)
        self.file_system = file_system


class ForeignScanFile(WriterError):
    """The scan file's name is taken by another scan's file: it is never reused."""

    def __init__(self, path: object, owner: str) -> None:
        super().__init__(f"{path} holds scan {owner}")
        self.path = path
        self.owner = owner
