"""Scans: the scan and motor commands, scan saving, measurement groups, the live ``Scan``.

User commands are written once as coroutine functions and work both ways (:func:`command`):
``await ascan(...)`` in async code, ``ascan(...)`` blocking in a console's worker thread. The
context a command runs in (its session's Redis, scan saving, active measurement group, output)
is a :class:`ScanContext` made current by whoever runs it (a ``Session``); this layer never
imports the session layer.

What the layers above use besides the commands: the scan hooks (:class:`ScanHooks`, whose
``add_scan_start_hook``/``add_scan_end_hook`` take a function of a :class:`ScanEvent`), the
bridge's parts a session runs commands with (``run_blocking``, ``on_event_loop_thread``,
``ThreadInterrupter``, ``routed_sleep``), and the free-space rule the writer shares
(``check_free_space``, ``min_free_bytes``).
"""

from typing import Any

from ._alignment import cen, com, fwhm, goto_cen, goto_com, goto_peak, peak, where
from ._arguments import ScanArgumentError
from ._bridge import (
    PRINTS_ITS_RESULT,
    CommandCalledWithoutLoop,
    ThreadInterrupter,
    command,
    current_interrupter,
    is_coroutine_function,
    on_event_loop_thread,
    prints_its_result,
    routed_sleep,
    run_blocking,
)
from ._clients import close_shared_clients
from ._commands import (
    SCAN_COMMANDS,
    a2scan,
    a3scan,
    a4scan,
    a5scan,
    amesh,
    anscan,
    ascan,
    ct,
    d2scan,
    d3scan,
    d4scan,
    d5scan,
    dmesh,
    dnscan,
    dscan,
    lineup,
    lookupscan,
    loopscan,
    pointscan,
    sct,
    timescan,
    triggerscan,
)
from ._conditions import counter_below
from ._context import Output, ScanContext, current_context, set_context, use_context
from ._continuous import CONTINUOUS_COMMANDS, ContinuousScan, f2scan, fscan, fscan2d, ftimescan
from ._counter_selection import CounterSelectionError
from ._display import follow_scan
from ._fit import AlignmentError
from ._fs import FileSystemTimeout, NotEnoughSpace, check_free_space, min_free_bytes
from ._groups import first_error
from ._history import ScanHistory, StoredScan
from ._hooks import ScanEvent, ScanHooks
from ._listing import lscnt, lsmg, lsobj
from ._measurement_group import MeasurementGroup, MeasurementGroupError
from ._motor_commands import MotorCommandError, mv, mvr, umv, umvct, umvr, wa, wm, wu
from ._plot_selection import PlotSelection, plotinit, plotselect, selected_channels
from ._scan import Scan, ScanError, read_scan_data
from ._scan_saving import (
    DATA_POLICY_COMMANDS,
    ScanSaving,
    ScanSavingError,
    ScanSavingValues,
    enddataset,
    newcollection,
    newdataset,
    newproposal,
    newsample,
)
from ._step_scan import build_chain

ALIGNMENT_COMMANDS = {
    f.__name__: f for f in (cen, com, fwhm, peak, where, goto_cen, goto_com, goto_peak)
}
MOTOR_COMMANDS = {f.__name__: f for f in (mv, mvr, umv, umvr, umvct, wa, wu, wm)}
LISTING_COMMANDS = {f.__name__: f for f in (lscnt, lsmg, lsobj, plotselect, plotinit)}


def user_commands() -> dict[str, Any]:
    """What a session puts in its namespace: every scan, motor, alignment, listing, plot and
    data policy command."""
    return {
        **SCAN_COMMANDS,
        **CONTINUOUS_COMMANDS,
        **MOTOR_COMMANDS,
        **ALIGNMENT_COMMANDS,
        **LISTING_COMMANDS,
        **DATA_POLICY_COMMANDS,
        "counter_below": counter_below,
    }


__all__ = [
    "ALIGNMENT_COMMANDS",
    "CONTINUOUS_COMMANDS",
    "DATA_POLICY_COMMANDS",
    "LISTING_COMMANDS",
    "MOTOR_COMMANDS",
    "PRINTS_ITS_RESULT",
    "SCAN_COMMANDS",
    "AlignmentError",
    "CommandCalledWithoutLoop",
    "ContinuousScan",
    "CounterSelectionError",
    "FileSystemTimeout",
    "MeasurementGroup",
    "MeasurementGroupError",
    "MotorCommandError",
    "NotEnoughSpace",
    "Output",
    "PlotSelection",
    "Scan",
    "ScanArgumentError",
    "ScanContext",
    "ScanError",
    "ScanEvent",
    "ScanHistory",
    "ScanHooks",
    "ScanSaving",
    "ScanSavingError",
    "ScanSavingValues",
    "StoredScan",
    "ThreadInterrupter",
    "a2scan",
    "a3scan",
    "a4scan",
    "a5scan",
    "amesh",
    "anscan",
    "ascan",
    "build_chain",
    "cen",
    "check_free_space",
    "close_shared_clients",
    "com",
    "command",
    "counter_below",
    "ct",
    "current_context",
    "current_interrupter",
    "d2scan",
    "d3scan",
    "d4scan",
    "d5scan",
    "dmesh",
    "dnscan",
    "dscan",
    "enddataset",
    "f2scan",
    "first_error",
    "follow_scan",
    "fscan",
    "fscan2d",
    "ftimescan",
    "fwhm",
    "goto_cen",
    "goto_com",
    "goto_peak",
    "is_coroutine_function",
    "lineup",
    "lookupscan",
    "loopscan",
    "lscnt",
    "lsmg",
    "lsobj",
    "min_free_bytes",
    "mv",
    "mvr",
    "newcollection",
    "newdataset",
    "newproposal",
    "newsample",
    "on_event_loop_thread",
    "peak",
    "plotinit",
    "plotselect",
    "pointscan",
    "prints_its_result",
    "read_scan_data",
    "routed_sleep",
    "run_blocking",
    "sct",
    "selected_channels",
    "set_context",
    "timescan",
    "triggerscan",
    "umv",
    "umvct",
    "umvr",
    "use_context",
    "user_commands",
    "wa",
    "where",
    "wm",
    "wu",
]
