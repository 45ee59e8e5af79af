"""Device ownership: reentrant in-process locks and Redis leases across processes."""

from .holder import Holder, current_holder, holding_as, set_holder
from .manager import (
    DeviceLocked,
    LockInfo,
    LockLost,
    LockManager,
    device_lock,
    force_unlock,
    lock_timeout,
    locks,
    lslock,
    waiting_for_locks,
)

__all__ = [
    "DeviceLocked",
    "Holder",
    "LockInfo",
    "LockLost",
    "LockManager",
    "current_holder",
    "device_lock",
    "force_unlock",
    "holding_as",
    "lock_timeout",
    "locks",
    "lslock",
    "set_holder",
    "waiting_for_locks",
]
