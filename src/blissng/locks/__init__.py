"""Device ownership: reentrant in-process locks and Redis leases across processes."""

from .holder import Holder, current_holder, holding_as
from .manager import (
    DeviceLocked,
    LockInfo,
    LockLost,
    LockManager,
    device_lock,
    force_unlock,
    locks,
    lslock,
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
    "locks",
    "lslock",
]
