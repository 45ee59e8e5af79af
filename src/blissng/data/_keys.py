"""Redis key names of the data model (docs/data-model.md, "Key layout").

Readers in other languages rebuild nothing but ``scan_key(id)``: every other key of a scan is
named in its document.
"""

from __future__ import annotations

# The entry format owns the IDs; named here too, with the rest of the layout.
from ._entries import entry_id as entry_id
from ._entries import entry_index as entry_index

PREFIX = "blissng"
SCANS_STREAM = f"{PREFIX}:scans"
MEMORY_STATUS = f"{PREFIX}:memory"
SCANS_STREAM_MAXLEN = 10_000


def scan_key(scan_id: str) -> str:
    return f"{PREFIX}:scan:{scan_id}"


def state_key(scan_id: str) -> str:
    return f"{PREFIX}:scan:{scan_id}:state"


def ack_key(scan_id: str) -> str:
    return f"{PREFIX}:scan:{scan_id}:ack"


def channel_key(scan_id: str, channel: str) -> str:
    return f"{PREFIX}:scan:{scan_id}:data:{channel}"


def dataset_key(dataset: str) -> str:
    return f"{PREFIX}:dataset:{dataset}"


def dataset_scans_key(dataset: str) -> str:
    return f"{PREFIX}:dataset:{dataset}:scans"


def scan_number_key(session: str) -> str:
    return f"{PREFIX}:session:{session}:scan_number"
