"""The live-plot websocket: the current scan of a session, point by point, for the page.

``/ws/plot/{session}`` follows the session's scans through the data layer's reader API
(:class:`blissng.data.DataStore`), never the live scan objects: a plot sees exactly what the
writer and any other client see. For each scan it sends a description (motors, scalar counters,
1D channels, the mesh's grid, the curves chosen with ``plotselect``), then batches of new points
as they arrive, then the end state; a ``plotselect`` typed meanwhile is sent at once. A spectrum
or a frame asked for as "the last one" is sent again as new points arrive while the scan runs.
Messages are documented in docs/webshell.md. A new scan replaces the one being followed.

Reading is bounded: each XREAD takes at most :data:`READ_ENTRIES` batches per channel (``XREAD
COUNT``), so a page that connects late to a long scan catches up in steps, and each batch is
converted to JSON in bulk (numpy, not a Python loop per point).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import anyio.abc
import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from blissng.scans import selected_channels
from blissng.shell import ShellHub
from blissng.threads import run_in_thread

from ._console_socket import CLOSE_NOT_FOUND, Sender, close_websocket

log = logging.getLogger("blissng.web")

READ_ENTRIES = 64  # stream entries (batches) per channel in one XREAD of the plot
FOLLOW_PERIOD = 0.25  # a followed spectrum or frame is looked at this often while it grows
FOLLOW_ATTEMPTS = 40  # looks in a row that fail (10 s) before the following stops


def _mesh_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A mesh's own grid, from the scan document: ``{"shape": [n_slow, n_fast],
    "backnforth": bool}`` (points fill it row by row, the fast motor first)."""
    mesh = (doc.get("metadata", {}).get("scan_info") or {}).get("mesh")
    if not isinstance(mesh, dict):
        return None
    shape = mesh.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) for n in shape)):
        return None
    return {"shape": shape, "backnforth": bool(mesh.get("backnforth", False))}


def scan_selection(doc: dict[str, Any], plot: Any) -> list[str]:
    """What the user chose to plot for this scan: a ``plotselect`` typed since it started,
    else the selection it started with (its document's), else the session's."""
    started = float(doc.get("start_time") or 0.0)
    if plot is not None and plot.changed_at > started:
        return list(plot.selected)
    recorded = doc.get("metadata", {}).get("plotselect")
    if isinstance(recorded, list):
        return [str(entry) for entry in recorded]
    return list(plot.selected) if plot is not None else []


def describe_scan(scan: Any, plot: Any = None) -> dict[str, Any]:
    """What the page needs to set up a plot, from a ``ScanView``'s document (and the session's
    plot selection, ``plot``)."""
    from blissng.data import axis_channels, channel_label, counter_channels

    doc = scan.info
    channels: dict[str, Any] = doc.get("channels", {})
    # The document maps motors to their channels and says which channels are counters.
    motors = axis_channels(doc)
    scalars = counter_channels(doc, ndim=0)
    spectra = counter_channels(doc, ndim=1)
    images = [name for name, ch in channels.items() if ch.get("kind") == "reference"]
    mesh = _mesh_of(doc) if len(motors) >= 2 else None
    return {
        "id": doc.get("id", getattr(scan, "id", None)),
        "session": doc.get("session"),
        "number": doc.get("number"),
        "name": doc.get("name"),
        "title": doc.get("title") or doc.get("name"),
        "npoints": doc.get("npoints") or 0,
        "motors": motors,
        "counters": scalars,
        "spectra": spectra,
        "images": images,
        "labels": {name: channel_label(doc, name) for name in channels},
        "units": {name: ch.get("unit") for name, ch in channels.items()},
        "mesh": mesh,
        "selected": selected_channels(doc, scan_selection(doc, plot)),
    }


def _jsonable(values: Any) -> list[Any]:
    """A batch as JSON-able values, in bulk: NaN and infinities become null."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            with_nulls = array.astype(object)
            with_nulls[bad] = None
            return with_nulls.tolist()
    return array.tolist()


async def _stream_scan(sender: Sender, scan: Any, plot: Any) -> None:
    description = describe_scan(scan, plot)
    await sender.send("scan", description)
    names = description["motors"] + description["counters"]
    if names:
        cursor = scan.cursor(names)
        while not cursor.finished:
            data = await cursor.read(timeout=1.0, count=READ_ENTRIES)
            batch = {name: _jsonable(values) for name, values in data.items() if len(values)}
            if batch:
                await sender.send("points", batch)
    try:  # the channels are sealed just before the scan closes
        state = await scan.wait_state("closed", timeout=30)
    except TimeoutError:
        state = await scan.refresh()
    await sender.send("end", {"state": state, "end_reason": scan.end_reason, "error": scan.error})


async def _follow(
    sender: Sender, store: Any, session: str, followed: dict[str, Any], plot: Any
) -> None:
    from blissng.data import DataError

    async with anyio.create_task_group() as tg:
        current: anyio.CancelScope | None = None

        async def stream(scan: Any, scope: anyio.CancelScope) -> None:
            followed["scan"] = scan
            with scope:
                try:
                    await _stream_scan(sender, scan, plot)
                except DataError as exc:
                    await sender.send("error", f"scan {scan.id}: {exc}")

        try:
            last = await store.last_scan(session)
        except DataError:
            last = None
        if last is not None:
            current = anyio.CancelScope()
            tg.start_soon(stream, last, current)
        async for scan in store.follow(session):
            if current is not None:
                current.cancel()
            current = anyio.CancelScope()
            tg.start_soon(stream, scan, current)


async def _send_selections(sender: Sender, plot: Any, followed: dict[str, Any]) -> None:
    """Each ``plotselect`` typed in the session: the curves it chooses in the scan shown."""
    changed = anyio.Event()

    def on_change(_selected: list[str]) -> None:  # called on the event loop by plotselect
        changed.set()

    remove = plot.subscribe(on_change)
    try:
        while True:
            await changed.wait()
            changed = anyio.Event()
            scan = followed.get("scan")
            if scan is not None:
                chosen = selected_channels(scan.info, list(plot.selected))
                await sender.send("select", {"selected": chosen, "plotselect": plot.selected})
    finally:
        remove()


MAX_FRAME_SIDE = 256  # pixels sent to the page per side (frames are decimated to fit)


def _open_frames(path: str) -> Any:
    """The camera's HDF5 file, for reading while the camera may still write it (SWMR)."""
    import h5py

    try:
        return h5py.File(path, "r", locking=False, swmr=True)
    except (OSError, ValueError):  # a file not written in SWMR mode
        return h5py.File(path, "r", locking=False)


def load_frame(reference: Any) -> dict[str, Any]:
    """A referenced 2D frame (``REFERENCE_DTYPE`` record: file, dataset, index), read from its
    HDF5 file (call in a worker thread), decimated and scaled to 8 bits for the page."""
    path = bytes(reference["file"]).rstrip(b"\0").decode()
    dataset = bytes(reference["dataset"]).rstrip(b"\0").decode()
    index = int(reference["index"])
    with _open_frames(path) as file:
        frames = file[dataset]
        if hasattr(frames, "refresh"):
            frames.refresh()  # what a writer in SWMR mode added since the file was opened
        frame = np.asarray(frames[index], dtype=np.float64)
    step = max(1, -(-max(frame.shape) // MAX_FRAME_SIDE))
    small = frame[::step, ::step]
    low, high = float(small.min()), float(small.max())
    scaled = np.zeros(small.shape, dtype=np.uint8)
    if high > low:
        scaled = np.rint((small - low) * (255.0 / (high - low))).astype(np.uint8)
    return {
        "shape": list(scaled.shape),
        "pixels": scaled.ravel().tolist(),
        "min": low,
        "max": high,
        "source": f"{path}::{dataset}[{index}]",
    }


async def _point_message(kind: str, channel: str, view: Any, index: int) -> dict[str, Any]:
    """The ``spectrum`` or ``frame`` message for point ``index`` of ``view``."""
    values = await view.get(index, index + 1)
    if kind == "frame":
        frame = await run_in_thread(load_frame, values[0])
        return {"channel": channel, "index": index, **frame}
    return {"channel": channel, "index": index, "values": _jsonable(values[0])}


async def _follow_point(sender: Sender, kind: str, channel: str, view: Any, sent: int) -> None:
    """While the channel grows, send its new last point (at most every FOLLOW_PERIOD s),
    until it is sealed and its last point was sent."""
    from blissng.data import DataError

    failures = 0
    while True:
        await anyio.sleep(FOLLOW_PERIOD)
        try:
            sealed = await view.sealed()
            last = await view.length() - 1
            if last > sent:
                await sender.send(kind, await _point_message(kind, channel, view, last))
                sent = last
        except (DataError, OSError, KeyError, ValueError) as exc:
            # A frame not on disk yet, Redis away: the next look will tell, a few times.
            failures += 1
            if failures >= FOLLOW_ATTEMPTS:
                await sender.send("error", f"{channel}: stopped following it: {exc}")
                return
            continue
        failures = 0
        if sealed:
            return


def _request(text: str | None) -> tuple[str, str, int | None]:
    try:
        request = json.loads(text or "")
    except RecursionError:  # nested too deep
        raise ValueError("malformed request") from None
    kind, channel = str(request[0]), str(request[1])
    index = request[2] if len(request) > 2 else None
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise ValueError(f"index must be an integer or null, got {index!r}")
    if index is not None and abs(index) >= 2**63:
        raise ValueError(f"index out of range: {index}")
    return kind, channel, index


async def _answer(
    sender: Sender,
    text: str | None,
    scan: Any,
    following: dict[str, Any],
    tg: anyio.abc.TaskGroup,
) -> None:
    """``["spectrum", channel, index or null]``: one point of a 1D channel (an MCA spectrum)
    of the followed scan, on demand; null: the last one, then each new last one while the scan
    runs. ``["frame", ...]`` the same for a 2D detector's reference channel (the frame is read
    from its file). A request replaces the previous one's following."""
    from blissng.data import DataError

    try:
        kind, channel, index = _request(text)
    except (ValueError, IndexError, TypeError, KeyError):
        await sender.send("error", 'malformed request: expected ["spectrum", channel, index]')
        return
    if kind not in ("spectrum", "frame"):
        await sender.send("error", f"unknown request {kind!r}")
        return
    if scan is None or channel not in scan.channels:
        await sender.send("error", f"no channel {channel!r} in the current scan")
        return
    view = scan.channels[channel]
    mismatch = _kind_mismatch(kind, channel, view, scan)
    if mismatch is not None:
        await sender.send("error", mismatch)
        return
    previous = following.pop("scope", None)
    if previous is not None:
        previous.cancel()
    live = index is None
    try:
        if index is None:
            index = await view.length() - 1
        if index >= 0:
            await sender.send(kind, await _point_message(kind, channel, view, index))
        elif not live:
            raise ValueError("negative index")
    except (DataError, ValueError, OSError, KeyError, IndexError, OverflowError) as exc:
        await sender.send("error", f"{channel}[{index}]: {exc}")
        return
    if live:
        scope = following["scope"] = anyio.CancelScope()

        async def follow() -> None:
            with scope:
                await _follow_point(sender, kind, channel, view, index)

        tg.start_soon(follow)


def _kind_mismatch(kind: str, channel: str, view: Any, scan: Any) -> str | None:
    """Why ``kind`` cannot be read from ``channel`` (a scalar asked as a spectrum, a
    spectrum as a frame...), naming the channels that can; None when it can."""
    fits = {
        "spectrum": lambda v: v.kind == "data" and len(v.shape) == 1,
        "frame": lambda v: v.kind == "reference",
    }[kind]
    if fits(view):
        return None
    others = [name for name, other in scan.channels.items() if fits(other)]
    what = "1D" if kind == "spectrum" else "2D (camera)"
    return (
        f"{channel} has no {kind}s (it is {_channel_shape(view)}); the {what} channels of "
        f"this scan: {', '.join(others) or 'none'}"
    )


def _channel_shape(view: Any) -> str:
    if view.kind == "reference":
        return "a camera's frames"
    return "a scalar channel" if not view.shape else f"a channel of shape {list(view.shape)}"


def _session_plot(hub: ShellHub, session: str) -> Any:
    """The session's plot selection (``plotselect``), when the session has one."""
    return getattr(hub.get(session).session, "plot", None)


async def serve_plot(
    websocket: WebSocket, hub: ShellHub, session: str, data_url: str | None
) -> None:
    await websocket.accept()
    try:
        plot = _session_plot(hub, session)
    except KeyError as exc:
        await close_websocket(websocket, CLOSE_NOT_FOUND, str(exc.args[0]))
        return
    sender = Sender(websocket)
    if data_url is None:
        await sender.send("error", "this server publishes no scan data (no data Redis)")
        await close_websocket(websocket, 1000, "no scan data")
        return
    from blissng.data import DataStore

    try:
        async with DataStore(data_url) as store, anyio.create_task_group() as tg:
            followed: dict[str, Any] = {}
            following: dict[str, Any] = {}

            async def receive_requests() -> None:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        tg.cancel_scope.cancel()
                        return
                    try:
                        await _answer(
                            sender, message.get("text"), followed.get("scan"), following, tg
                        )
                    except (WebSocketDisconnect, OSError):
                        raise
                    except Exception as exc:  # a bad request never ends the plot
                        log.exception("plot request %.200r failed", message.get("text"))
                        await sender.send("error", f"the request failed: {exc!r}")

            tg.start_soon(receive_requests)
            if plot is not None:
                tg.start_soon(_send_selections, sender, plot, followed)
            await _follow(sender, store, session, followed, plot)
    except* (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the tab went away, even while a batch was being sent: only this plot ends


__all__ = ["describe_scan", "serve_plot"]
