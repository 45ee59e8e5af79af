"""blissng.health: the event-loop monitor (stalls and their culprits) and its figures."""

from ._loop_monitor import (
    FrameInfo,
    LoopMonitor,
    LoopStats,
    Stall,
    current_monitor,
    expected_stall,
    loop_monitor,
    loop_stats,
)

__all__ = [
    "FrameInfo",
    "LoopMonitor",
    "LoopStats",
    "Stall",
    "current_monitor",
    "expected_stall",
    "loop_monitor",
    "loop_stats",
]
