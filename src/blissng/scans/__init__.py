"""blissng.scans: scan and motor commands, scan saving, measurement groups, the live Scan.

User commands are written once as coroutine functions and work both ways (see
:mod:`blissng.scans.bridge`): ``await ascan(...)`` in async code, ``ascan(...)`` blocking in a
console's worker thread. The context a command runs in (its session's Redis, scan saving,
active measurement group, output) is a :class:`~blissng.scans.context.ScanContext` made
current by whoever runs it (a ``Session``); this layer never imports the session layer.
"""

from typing import Any

from . import hooks
from .alignment import cen, com, goto_cen, goto_com, goto_peak, peak, where
from .bridge import CommandCancelled, command
from .commands import (
    SCAN_COMMANDS,
    ScanArgumentError,
    a2scan,
    amesh,
    anscan,
    ascan,
    build_chain,
    ct,
    d2scan,
    dmesh,
    dnscan,
    dscan,
    lookupscan,
    loopscan,
    pointscan,
    sct,
    timescan,
    triggerscan,
)
from .conditions import counter_below
from .context import ScanContext, current_context, set_context, use_context
from .measurement_group import MeasurementGroup
from .motor_commands import mv, mvr, umv, umvr, wa, wm
from .scan import Scan, ScanError, read_scan_data
from .scan_saving import ScanSaving, ScanSavingError

ALIGNMENT_COMMANDS = {f.__name__: f for f in (cen, com, peak, where, goto_cen, goto_com, goto_peak)}
MOTOR_COMMANDS = {f.__name__: f for f in (mv, mvr, umv, umvr, wa, wm)}


def user_commands() -> dict[str, Any]:
    """What a session puts in its namespace: every scan, motor and alignment command."""
    return {
        **SCAN_COMMANDS,
        **MOTOR_COMMANDS,
        **ALIGNMENT_COMMANDS,
        "counter_below": counter_below,
    }


__all__ = [
    "ALIGNMENT_COMMANDS",
    "MOTOR_COMMANDS",
    "SCAN_COMMANDS",
    "CommandCancelled",
    "MeasurementGroup",
    "Scan",
    "ScanArgumentError",
    "ScanContext",
    "ScanError",
    "ScanSaving",
    "ScanSavingError",
    "a2scan",
    "amesh",
    "anscan",
    "ascan",
    "build_chain",
    "cen",
    "com",
    "command",
    "counter_below",
    "ct",
    "current_context",
    "d2scan",
    "dmesh",
    "dnscan",
    "dscan",
    "goto_cen",
    "goto_com",
    "goto_peak",
    "hooks",
    "lookupscan",
    "loopscan",
    "mv",
    "mvr",
    "peak",
    "pointscan",
    "read_scan_data",
    "sct",
    "set_context",
    "timescan",
    "triggerscan",
    "umv",
    "umvr",
    "use_context",
    "wa",
    "where",
    "wm",
]
