"""The live display of a scan: a table of points and a progress line, written to an output.

The display follows the scan through the data layer's reader API (``ScanView.cursor``), so it
shows a scan made by this session or by another one the same way. Without Redis (a script
without a session) the scan feeds it from its point callbacks instead.

Only scalar channels are tabulated; the columns are the point index, the motors, the elapsed
time and the counters (short names: ``diode`` for ``sim:diode`` when unambiguous).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .context import Output

MAX_COLUMNS = 12
FOOTER_WAIT = 5.0  # after the last point, how long to wait for the scan's end reason


def short_names(names: Sequence[str]) -> dict[str, str]:
    """``{"axis:m1": "m1", "sim:diode": "diode"}``; the full name where short ones clash."""
    shorts = {n: n.rsplit(":", 1)[-1] for n in names}
    counts: dict[str, int] = {}
    for short in shorts.values():
        counts[short] = counts.get(short, 0) + 1
    return {n: (s if counts[s] == 1 else n) for n, s in shorts.items()}


def table_columns(channels: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The channels shown, in order: motors, elapsed time, counters (scalars only)."""
    scalars = [
        name
        for name, desc in channels.items()
        if not desc.get("shape") and desc.get("kind", "data") == "data"
    ]
    motors = [n for n in scalars if n.startswith("axis:")]
    elapsed = [n for n in scalars if n.endswith(":elapsed_time")]
    others = [
        n for n in scalars if n not in motors and n not in elapsed and not n.endswith(":epoch")
    ]
    return (motors + elapsed + others)[:MAX_COLUMNS]


class ScanTable:
    """Formats rows of a scan as they complete (every column has the point)."""

    def __init__(
        self, output: Output, columns: Sequence[str], *, title: str = "", npoints: int | None = None
    ) -> None:
        self.output = output
        self.columns = list(columns)
        self.npoints = npoints or None
        self.labels = short_names(self.columns)
        self.width = max([10, *(len(self.labels[c]) for c in self.columns)]) + 2
        self._data: dict[str, list[np.ndarray]] = {c: [] for c in self.columns}
        self._lengths = dict.fromkeys(self.columns, 0)
        self._row_format = "{:>6}" + f"{{:>{self.width}}}" * len(self.columns)
        self._printed = 0
        self._seen: dict[str, int] = {}
        self._t0 = time.monotonic()
        self.title = title
        # One point without motors (ct, sct): counter = value lines, as BLISS shows them.
        self.vertical = self.npoints == 1 and not any(c.startswith("axis:") for c in columns)

    def header(self) -> None:
        if self.vertical:
            self.output.write(f"\n{self.title}\n")
            self.output.flush()
            return
        head = f"{'#':>6}" + "".join(f"{self.labels[c]:>{self.width}}" for c in self.columns)
        self.output.write(f"\n{self.title}\n{head}\n")
        self.output.flush()

    def add(self, batches: Mapping[str, np.ndarray]) -> None:
        if not self.columns:  # nothing to tabulate (spectra, images): count points
            for name, batch in batches.items():
                self._seen[name] = self._seen.get(name, 0) + len(batch)
            self._printed = min(self._seen.values()) if self._seen else 0
            return
        for name, batch in batches.items():
            if name in self._data and len(batch):
                self._data[name].append(np.asarray(batch).reshape(-1))
                self._lengths[name] += len(batch)
        complete = min(self._lengths.values()) if self.columns else 0
        if complete <= self._printed:
            return
        arrays = {
            c: np.concatenate(self._data[c]) if self._data[c] else np.empty(0) for c in self.columns
        }
        if self.vertical:
            name_width = max(len(self.labels[c]) for c in self.columns)
            lines = [
                f"  {self.labels[c]:>{name_width}} = {_fmt(arrays[c][0]):>14}"
                for c in self.columns
                if not c.endswith(":elapsed_time")
            ]
            self._printed = complete
            for c in self.columns:
                self._data[c] = []
            self.output.write("\n".join(lines) + "\n")
            self.output.flush()
            return
        row_format = self._row_format
        fmt = _fmt
        columns = [arrays[c][: complete - self._printed].tolist() for c in self.columns]
        lines = [
            row_format.format(index, *map(fmt, row))
            for index, row in enumerate(zip(*columns, strict=True), start=self._printed)
        ]
        # Keep what is not yet printed.
        consumed = complete - self._printed
        for c in self.columns:
            rest = arrays[c][consumed:]
            self._data[c] = [rest] if len(rest) else []
        self._printed = complete
        self.output.write("\n".join(lines) + "\n")
        self.output.flush()

    @property
    def printed(self) -> int:
        return self._printed

    def progress(self) -> str:
        total = f"/{self.npoints}" if self.npoints else ""
        return f"{self._printed}{total} points in {time.monotonic() - self._t0:.2f} s"

    def footer(self, state: str, error: str | None = None) -> None:
        line = f"  {state}: {self.progress()}"
        if error:
            line += f" ({error})"
        self.output.write(line + "\n")
        self.output.flush()


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


async def follow_scan(
    view: Any, output: Output, *, timeout: float = 0.2, footer: bool = True
) -> ScanTable:
    """Display a scan read through the reader API until every channel is sealed, then (with
    ``footer``) how it ended.

    ``view`` is a ``blissng.data.ScanView`` (of any session's scan).
    """
    info = view.info
    channels = info.get("channels", {})
    columns = table_columns(channels)
    table = ScanTable(
        output,
        columns,
        title=f"Scan {info.get('number')} {info.get('title') or info.get('name')}",
        npoints=info.get("npoints"),
    )
    table.header()
    cursor = view.cursor(columns or None)
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
