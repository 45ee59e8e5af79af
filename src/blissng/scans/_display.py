"""The live display of a scan: a table of points and a progress line, written to an output.

The display follows the scan through the data layer's reader API (``ScanView.cursor``), so it
shows a scan made by this session or by another one the same way. Without Redis (a script
without a session) the scan feeds it from its point callbacks instead.

Only scalar channels are tabulated; the columns are the point index, the motors, the elapsed
time and the counters (short names: ``diode`` for ``sim:diode`` when unambiguous, with the
unit when the channel has one: ``m1[mm]``). No column is ever dropped: when the output says
how wide it is (a console's ``columns``) and the row does not fit, every row is wrapped on
several lines. A one-point count without motors (``ct``) is shown as ``name = value`` lines
grouped by controller.

On a terminal (``output.isatty()``) a progress line under the table (points done, rate,
elapsed time, time left) is rewritten in place while the scan runs, and erased at the end; a
console shows it without keeping it in the session's log (``output.write_transient``).

Points faster than anyone reads (a continuous scan at 10 kHz: more than ``SUMMARY_RATE``
rows a second) are not printed one per line when the scan has more than ``SUMMARY_ROWS``
points: the table prints one summary line a second instead (progress and the last point's
values). A shorter scan is always tabulated whole.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from blissng.data import channel_label, channel_role

from ._context import Output

FOOTER_WAIT = 5.0  # after the last point, how long to wait for the scan's end reason
PROGRESS_PERIOD = 0.25  # the progress line is rewritten at most this often
_ERASE_LINE = "\r\x1b[2K"  # back to the line's start, erase the whole line
SUMMARY_RATE = 200  # rows per second above which the table summarises ...
SUMMARY_ROWS = 200  # ... a scan of more points than this
SUMMARY_PERIOD = 1.0  # one summary line per this many seconds


def short_names(names: Sequence[str]) -> dict[str, str]:
    """``{"axis:m1": "m1", "sim:diode": "diode"}``; the full name where short ones clash
    (for channels known without a scan document; a document's channels have labels)."""
    shorts = {n: n.rsplit(":", 1)[-1] for n in names}
    counts: dict[str, int] = {}
    for short in shorts.values():
        counts[short] = counts.get(short, 0) + 1
    return {n: (s if counts[s] == 1 else n) for n, s in shorts.items()}


def table_columns(channels: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The channels shown, in order: motors, elapsed time, counters (every scalar one), as
    the channels' roles (the scan document's) say."""
    scalars = {
        name: channel_role(desc)
        for name, desc in channels.items()
        if not desc.get("shape") and desc.get("kind", "data") == "data"
    }
    motors = [n for n, role in scalars.items() if role == "axis"]
    elapsed = [n for n, role in scalars.items() if role == "time" and n.endswith("elapsed_time")]
    counters = [n for n, role in scalars.items() if role == "counter"]
    return motors + elapsed + counters


def terminal_columns(output: Any) -> int | None:
    """How many characters a line of ``output`` holds, when it says (a console does)."""
    columns = getattr(output, "columns", None)
    return columns if isinstance(columns, int) and columns > 20 else None


def _is_terminal(output: Any) -> bool:
    isatty = getattr(output, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``2 h 10 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ScanTable:
    """Formats rows of a scan as they complete (every column has the point).

    ``channels``: the channels' descriptions (the scan document's: ``unit`` shown in the
    header, ``label`` (default: the short name), ``device`` and ``role``); ``columns_limit``:
    the width of the output in characters (rows longer than that are wrapped; default: what
    the output says, else no limit).
    """

    def __init__(
        self,
        output: Output,
        columns: Sequence[str],
        *,
        title: str = "",
        npoints: int | None = None,
        channels: Mapping[str, Mapping[str, Any]] | None = None,
        columns_limit: int | None = None,
    ) -> None:
        self.output = output
        self.columns = list(columns)
        self.npoints = npoints or None
        described = {c: (channels or {}).get(c) or {} for c in self.columns}
        self.units = {c: described[c].get("unit") for c in self.columns}
        self.devices = {c: described[c].get("device") for c in self.columns}
        self.roles = {c: channel_role(described[c]) for c in self.columns}
        shorts = short_names(self.columns)
        names = {c: described[c].get("label") or shorts[c] for c in self.columns}
        self.labels = {
            c: names[c] + (f"[{self.units[c]}]" if self.units[c] else "") for c in self.columns
        }
        # Each column as wide as its own label (at least 10), not all as wide as the widest:
        # one long name (elapsed_time[s]) no longer widens every column past the terminal.
        self.widths = [max(10, len(self.labels[c])) + 2 for c in self.columns]
        self._data: dict[str, list[np.ndarray]] = {c: [] for c in self.columns}
        self._lengths = dict.fromkeys(self.columns, 0)
        self._printed = 0
        self._seen: dict[str, int] = {}
        self._t0 = time.monotonic()
        self.title = title
        self.line_limit = columns_limit or terminal_columns(output)
        self._chunks = self._wrap(self.line_limit)
        self._formats = [
            ("{:>6}" if i == 0 else " " * 6) + "".join(f"{{:>{self.widths[c]}}}" for c in chunk)
            for i, chunk in enumerate(self._chunks)
        ]
        self.progress_shown = _is_terminal(output)
        self._progress_written = 0.0
        self._progress_on_screen = False
        self.summarised = False  # one line a second instead of a line per point
        self._summary_written = 0.0
        self._first_row: tuple[float, int] | None = None  # when rows began (scan clock or wall)
        # One point without motors (ct, sct): counter = value lines, as BLISS shows them.
        self.vertical = self.npoints == 1 and "axis" not in self.roles.values()

    def _wrap(self, limit: int | None) -> list[list[int]]:
        """Column indices of each line of a row: one line, or several when it is too wide."""
        if not self.columns:
            return [[]]
        if limit is None:
            return [list(range(len(self.columns)))]
        lines: list[list[int]] = [[]]
        used = 6  # the point's index
        for index, width in enumerate(self.widths):
            if lines[-1] and used + width > limit:
                lines.append([])
                used = 6
            lines[-1].append(index)
            used += width
        return lines

    @property
    def wrapped(self) -> bool:
        """Whether a row takes several lines (the output is narrower than the table)."""
        return len(self._chunks) > 1

    def header(self) -> None:
        if self.vertical:
            self._write(f"\n{self.title}\n")
            return
        lines = [
            ("     #" if i == 0 else " " * 6)
            + "".join(f"{self.labels[self.columns[c]]:>{self.widths[c]}}" for c in chunk)
            for i, chunk in enumerate(self._chunks)
        ]
        note = ""
        if self.wrapped:
            each = len(self._chunks)
            note = f"  ({each} lines per point: the terminal is narrower than the table)\n"
        self._write(f"\n{self.title}\n{note}" + "\n".join(lines) + "\n")

    def add(self, batches: Mapping[str, np.ndarray]) -> None:
        if not self.columns:  # nothing to tabulate (spectra, images): count points
            for name, batch in batches.items():
                self._seen[name] = self._seen.get(name, 0) + len(batch)
            self._printed = min(self._seen.values()) if self._seen else 0
            self.tick()
            return
        for name, batch in batches.items():
            if name in self._data and len(batch):
                self._data[name].append(np.asarray(batch).reshape(-1))
                self._lengths[name] += len(batch)
        complete = min(self._lengths.values())
        if complete <= self._printed:
            self.tick()
            return
        arrays = {
            c: np.concatenate(self._data[c]) if self._data[c] else np.empty(0) for c in self.columns
        }
        consumed = complete - self._printed
        if self._summarise(complete, arrays, consumed):
            self._keep_rest(arrays, consumed)
            self._printed = complete
            self._summary({c: arrays[c][consumed - 1] for c in self.columns})
            return
        text = self._vertical(arrays) if self.vertical else self._rows(arrays, consumed)
        self._keep_rest(arrays, consumed)
        self._printed = complete
        self._write(text)

    def _keep_rest(self, arrays: Mapping[str, np.ndarray], consumed: int) -> None:
        """Keep what is not yet printed."""
        for c in self.columns:
            rest = arrays[c][consumed:]
            self._data[c] = [rest] if len(rest) else []

    def _summarise(self, complete: int, arrays: Mapping[str, np.ndarray], consumed: int) -> bool:
        """Whether rows come faster than ``SUMMARY_RATE`` a second, as the scan's own clock
        (its elapsed-time column) says, or the wall clock without one."""
        if self.summarised or self.vertical:
            return self.summarised
        clock = next((c for c in self.columns if self.roles[c] == "time"), None)
        now = arrays[clock][consumed - 1] if clock else time.monotonic()
        if self._first_row is None:  # (its time, the rows then)
            self._first_row = (arrays[clock][0], 1) if clock else (now, complete)
        span = float(now - self._first_row[0])
        rows = complete - self._first_row[1]
        # a scan of more than SUMMARY_ROWS points is judged on its first rows; one of unknown
        # length once it has more
        many = (self.npoints or 0) > SUMMARY_ROWS and complete >= 10
        if (many or complete > SUMMARY_ROWS) and span > 0 and rows / span > SUMMARY_RATE:
            self.summarised = True
            self._write(f"  (more than {SUMMARY_RATE} points/s: one line per second)\n")
        return self.summarised

    def _summary(self, last: Mapping[str, Any]) -> None:
        """A summary line (progress, the last point's values) if one is due."""
        now = time.monotonic()
        if now - self._summary_written < SUMMARY_PERIOD:
            self.tick()
            return
        self._summary_written = now
        values = "  ".join(f"{self.labels[c]}={_fmt(last[c])}" for c in self.columns)
        self._write(f"  {self.progress_line()}  {values}\n")

    def _rows(self, arrays: Mapping[str, np.ndarray], count: int) -> str:
        fmt = _fmt
        cells = [list(map(fmt, arrays[c][:count].tolist())) for c in self.columns]
        lines = []
        for row, index in enumerate(range(self._printed, self._printed + count)):
            first, *more = zip(self._chunks, self._formats, strict=True)
            lines.append(first[1].format(index, *(cells[c][row] for c in first[0])))
            for chunk, line_format in more:  # a wrapped row's next lines: no index
                lines.append(line_format.format(*(cells[c][row] for c in chunk)))
        return "\n".join(lines) + "\n"

    def _vertical(self, arrays: Mapping[str, np.ndarray]) -> str:
        """``name[unit] = value`` lines, grouped by the controller that read them."""
        shown = [c for c in self.columns if self.roles.get(c, "counter") == "counter"]
        groups: dict[str, list[str]] = {}
        for c in shown:
            groups.setdefault(self.devices.get(c) or "", []).append(c)
        name_width = max([len(self.labels[c]) for c in shown] or [1])
        lines = []
        for controller, members in groups.items():
            if controller:
                lines.append(f"  {controller}")
            for c in members:
                lines.append(f"    {self.labels[c]:>{name_width}} = {_fmt(arrays[c][0]):>14}")
        return "\n".join(lines) + "\n"

    @property
    def printed(self) -> int:
        return self._printed

    def progress(self) -> str:
        total = f"/{self.npoints}" if self.npoints else ""
        return f"{self._printed}{total} points in {time.monotonic() - self._t0:.2f} s"

    def progress_line(self) -> str:
        """``12/41 points  8.3 points/s  elapsed 1.4 s  left 3.5 s``."""
        elapsed = time.monotonic() - self._t0
        done = self._printed
        parts = [f"{done}/{self.npoints} points" if self.npoints else f"{done} points"]
        rate = done / elapsed if elapsed > 0 else 0.0
        if done:
            parts.append(f"{rate:.3g} points/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if self.npoints and done and rate > 0:
            parts.append(f"left {format_duration(max(0, self.npoints - done) / rate)}")
        return "  ".join(parts)

    def tick(self) -> None:
        """Rewrite the progress line if it is due (the scan goes on without new rows)."""
        if self.progress_shown and time.monotonic() - self._progress_written >= PROGRESS_PERIOD:
            self._write("")

    def _write(self, text: str) -> None:
        """Write ``text`` above the progress line (which is erased first, then redrawn). The
        progress line and its erasure go through ``output.write_transient`` when the output
        has it (a console: shown, not kept in the session's log)."""
        transient = getattr(self.output, "write_transient", None) or self.output.write
        if self._progress_on_screen:
            transient(_ERASE_LINE)
            self._progress_on_screen = False
        if text:
            self.output.write(text)
        if self.progress_shown and not self.vertical:
            transient("  " + self.progress_line())
            self._progress_on_screen = True
            self._progress_written = time.monotonic()
        self.output.flush()

    def footer(self, state: str, error: str | None = None) -> None:
        self.progress_shown = False
        line = f"  {state}: {self.progress()}"
        if error:
            line += f" ({error})"
        self._write(line + "\n")


def _fmt(value: Any) -> str:
    if type(value) is not float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
    magnitude = abs(value)
    if value != 0 and (magnitude >= 1e6 or magnitude < 1e-3):
        return f"{value:.4e}"
    return f"{value:.5g}"


def scan_table(output: Output, info: Mapping[str, Any]) -> ScanTable:
    """The table for a scan described by its document (``ScanView.info``)."""
    channels = info.get("channels", {})
    return ScanTable(
        output,
        table_columns(channels),
        title=f"Scan {info.get('number')} {info.get('title') or info.get('name')}",
        npoints=info.get("npoints"),
        channels={
            name: {**desc, "label": channel_label(info, name)} for name, desc in channels.items()
        },
    )


async def follow_scan(
    view: Any, output: Output, *, timeout: float = 0.2, footer: bool = True
) -> ScanTable:
    """Display a scan read through the reader API until every channel is sealed, then (with
    ``footer``) how it ended.

    ``view`` is a ``blissng.data.ScanView`` (of any session's scan).
    """
    table = scan_table(output, view.info)
    table.header()
    cursor = view.cursor(table.columns or None)
    while not cursor.finished:
        table.add(await cursor.read(timeout=timeout))
    if footer:
        state = "Finished"
        error = None
        with contextlib.suppress(TimeoutError):
            await view.wait_state("closed", timeout=FOOTER_WAIT)
            reason = view.end_reason
            state = {"aborted": "Aborted", "failed": "Failed"}.get(reason or "", "Finished")
            error = view.error or None
        table.footer(state, error)
    return table
