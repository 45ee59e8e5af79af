"""Device ownership: reentrant in-process locks and Redis leases across processes.

There is no process-wide lock manager: a :class:`LockManager` is made by its owner (the
server, for its sessions) and passed to whoever takes locks (the scans, through their
``ScanContext.locks``)."""

from ._holder import Holder, current_holder, holding_as, set_holder
from ._manager import (
    DeviceLocked,
    LockInfo,
    LockLost,
    LockManager,
    lock_timeout,
    waiting_for_locks,
)

__all__ = [
    "DeviceLocked",
    "Holder",
    "LockInfo",
    "LockLost",
    "LockManager",
    "current_holder",
    "holding_as",
    "lock_timeout",
    "set_holder",
    "waiting_for_locks",
]
