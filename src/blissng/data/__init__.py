"""Scan data in Redis: the publisher, the readers and the memory policy.

The layout in Redis is documented in docs/data-model.md (the contract with every reader);
``keys`` names its keys (``keys.scan_key(id)``, ``keys.channel_key(id, channel)``, ...).
Writing: :class:`ScanPublisher` of a :class:`ScanDocument`; reading: :class:`DataStore` ->
:class:`ScanView` -> :class:`ChannelView` and the cursors (:class:`SyncDataStore` for
blocking code); the memory policy: :class:`MemoryGuard`, ``acknowledge`` and
``mark_scan_written`` (the writer's side); why scans stop when nobody pressed Ctrl-C:
``give_up_on_redis``, ``aborting_because``.
"""

from . import _keys as keys
from ._cursors import ChannelCursor, ScanCursor
from ._datasets import close_dataset
from ._document import (
    Retention,
    ScanDocument,
    axis_channels,
    channel_label,
    channel_labels,
    channel_role,
    counter_channels,
    description_dtype,
    find_channel,
    nexus_name,
    time_channels,
)
from ._entries import FlatEntry
from ._entries import decode_flat as decode_flat_entries
from ._entries import parse as parse_entry
from ._errors import (
    DataError,
    DataGone,
    DataMemoryFull,
    DataPublishError,
    EndOfData,
    NotYetAvailable,
    ScanNotFound,
)
from ._fallback_registry import DataFallback, register_fallback, unregister_fallback
from ._memory import (
    MemoryGuard,
    MemoryStatus,
    acknowledge,
    check_can_start_scan,
    mark_scan_written,
    trim_written,
)
from ._numbering import (
    allocate_scan_number,
    next_scan_number,
    release_reservation,
    release_scan_number,
    scan_file_name,
)
from ._options import PublisherOptions, PublisherStatus
from ._publisher import ScanPublisher
from ._stopping import abort_reason, aborting_because, forget_redis, give_up_on_redis
from ._sync import SyncChannelView, SyncDataStore, SyncScanView
from ._views import ChannelView, DataStore, ScanView

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
    "FlatEntry",
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
    "abort_reason",
    "aborting_because",
    "acknowledge",
    "allocate_scan_number",
    "axis_channels",
    "channel_label",
    "channel_labels",
    "channel_role",
    "check_can_start_scan",
    "close_dataset",
    "counter_channels",
    "decode_flat_entries",
    "description_dtype",
    "find_channel",
    "forget_redis",
    "give_up_on_redis",
    "keys",
    "mark_scan_written",
    "next_scan_number",
    "nexus_name",
    "parse_entry",
    "register_fallback",
    "release_reservation",
    "release_scan_number",
    "scan_file_name",
    "time_channels",
    "trim_written",
    "unregister_fallback",
]
