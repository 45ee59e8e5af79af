"""The errors of the data layer: each says what is missing and what to do about it."""

from __future__ import annotations

from blissng.errors import BlissngError


class DataError(BlissngError):
    """Base class of the data layer's errors."""


class NotYetAvailable(DataError, LookupError):
    """The point is not in Redis yet, but may come (the stream is not sealed)."""


class DataGone(DataError, LookupError):
    """The data was in Redis but is no longer: expired or trimmed, and no file fallback had it."""


class EndOfData(DataError, IndexError):
    """The stream is sealed before this index: the point will never come."""


class ScanNotFound(DataGone):
    """No scan with this id in Redis (never existed or expired)."""


class DataPublishError(DataError):
    """Publishing a scan failed (Redis away too long, out of memory too long, a bad emit)."""


class DataMemoryFull(DataError):
    """The data Redis is full of data not yet written to disk: new scans must not start."""
