"""Scan data in Redis: the publisher, the readers and the memory policy.

The layout in Redis is documented in docs/data-model.md (the contract with every reader).
"""

from .document import Retention, ScanDocument
from .errors import (
    DataError,
    DataGone,
    DataMemoryFull,
    DataPublishError,
    EndOfData,
    NotYetAvailable,
    ScanNotFound,
    WillNeverCome,
)
from .fallback import DataFallback, register_fallback, unregister_fallback
from .memory import MemoryGuard, MemoryStatus, acknowledge, check_can_start_scan, mark_scan_written
from .numbering import allocate_scan_number
from .publisher import PublisherOptions, PublisherStatus, ScanPublisher
from .reader import ChannelCursor, ChannelView, DataStore, ScanCursor, ScanView
from .sync import SyncChannelView, SyncDataStore, SyncScanView

__all__ = [
    "ChannelCursor",
    "ChannelView",
    "DataError",
    "DataFallback",
    "DataGone",
    "DataMemoryFull",
    "DataPublishError",
    "DataStore",
    "EndOfData",
    "MemoryGuard",
    "MemoryStatus",
    "NotYetAvailable",
    "PublisherOptions",
    "PublisherStatus",
    "Retention",
    "ScanCursor",
    "ScanDocument",
    "ScanNotFound",
    "ScanPublisher",
    "ScanView",
    "SyncChannelView",
    "SyncDataStore",
    "SyncScanView",
    "WillNeverCome",
    "acknowledge",
    "allocate_scan_number",
    "check_can_start_scan",
    "mark_scan_written",
    "register_fallback",
    "unregister_fallback",
]
