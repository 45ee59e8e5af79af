"""The live-plot websocket: the current scan of a session, point by point, for the page.

``/ws/plot/{session}`` follows the session's scans through the data layer's reader API
(:class:`blissng.data.DataStore`), never the live scan objects: a plot sees exactly what the
writer and any other client see. For each scan it sends a description (motors, scalar counters,
1D channels), then batches of new points as they arrive, then the end state. Messages are
documented in docs/webshell.md. A new scan replaces the one being followed.
"""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
import anyio.to_thread
from starlette.websockets import WebSocket, WebSocketDisconnect

from blissng.shell.consoles import ShellHub

from .consoles import CLOSE_NOT_FOUND, Sender, _close

POINTS_PER_MESSAGE = 5000


def _motor_channel(motor: str | None, channels: dict[str, Any]) -> str | None:
    """The channel holding a scanned motor's positions (``m1`` or ``axis:m1``)."""
    if motor is None:
        return None
    for candidate in (motor, f"axis:{motor}"):
        if candidate in channels:
            return candidate
    for name, channel in channels.items():
        if channel.get("device") == motor and not channel.get("shape"):
            return str(name)
    return None


def describe_scan(scan: Any) -> dict[str, Any]:
    """What the page needs to set up a plot, from a ``ScanView``'s document."""
    doc = scan.info
    channels: dict[str, Any] = doc.get("channels", {})
    motors = [
        channel
        for channel in (_motor_channel(m.get("name"), channels) for m in doc.get("motors", []))
        if channel is not None
    ]
    scalars = [
        name
        for name, ch in channels.items()
        if ch.get("kind", "data") == "data"
        and not ch.get("shape")
        and name not in motors
        and not name.startswith("timer:")
    ]
    spectra = [
        name
        for name, ch in channels.items()
        if ch.get("kind", "data") == "data" and len(ch.get("shape") or []) == 1
    ]
    images = [name for name, ch in channels.items() if ch.get("kind") == "reference"]
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
        "mesh": len(motors) >= 2 and doc.get("name") in ("amesh", "dmesh"),
    }


def _jsonable(values: Any) -> list[Any]:
    out = []
    for v in values.tolist():
        out.append(None if isinstance(v, float) and not math.isfinite(v) else v)
    return out


async def _stream_scan(sender: Sender, scan: Any) -> None:
    description = describe_scan(scan)
    await sender.send("scan", description)
    names = description["motors"] + description["counters"]
    if names:
        cursor = scan.cursor(names)
        while not cursor.finished:
            data = await cursor.read(timeout=1.0)
            batch = {name: _jsonable(values) for name, values in data.items() if len(values)}
            if batch:
                await sender.send("points", batch)
    try:  # the channels are sealed just before the scan closes
        state = await scan.wait_state("closed", timeout=30)
    except TimeoutError:
        state = await scan.refresh()
    await sender.send("end", {"state": state, "end_reason": scan.end_reason, "error": scan.error})


async def _follow(sender: Sender, store: Any, session: str, followed: dict[str, Any]) -> None:
    from blissng.data import DataError

    async with anyio.create_task_group() as tg:
        current: anyio.CancelScope | None = None

        async def stream(scan: Any, scope: anyio.CancelScope) -> None:
            followed["scan"] = scan
            with scope:
                try:
                    await _stream_scan(sender, scan)
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


MAX_FRAME_SIDE = 256  # pixels sent to the page per side (frames are decimated to fit)


def load_frame(reference: Any) -> dict[str, Any]:
    """A referenced 2D frame (``REFERENCE_DTYPE`` record: file, dataset, index), read from its
    HDF5 file (call in a worker thread), decimated and scaled to 8 bits for the page."""
    import h5py
    import numpy as np

    path = bytes(reference["file"]).rstrip(b"\0").decode()
    dataset = bytes(reference["dataset"]).rstrip(b"\0").decode()
    index = int(reference["index"])
    with h5py.File(path, "r", locking=False) as file:
        frame = np.asarray(file[dataset][index], dtype=np.float64)
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


async def _answer(sender: Sender, text: str | None, scan: Any) -> None:
    """``["spectrum", channel, index or null]``: one point of a 1D channel (an MCA spectrum)
    of the followed scan, on demand (the last one for null); ``["frame", ...]`` the same for
    a 2D detector's reference channel (the frame is read from its file)."""
    from blissng.data import DataError

    try:
        request = json.loads(text or "")
        kind, channel, index = request[0], request[1], request[2] if len(request) > 2 else None
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
    try:
        if index is None:
            index = await view.length() - 1
            if index < 0:
                await sender.send("error", f"{channel}: no point yet")
                return
        values = await view.get(int(index), int(index) + 1)
        if kind == "frame":
            frame = await anyio.to_thread.run_sync(load_frame, values[0])
    except (DataError, ValueError, OSError, KeyError) as exc:
        await sender.send("error", f"{channel}[{index}]: {exc}")
        return
    if kind == "frame":
        await sender.send("frame", {"channel": channel, "index": int(index), **frame})
        return
    await sender.send(
        "spectrum", {"channel": channel, "index": int(index), "values": _jsonable(values[0])}
    )


async def serve_plot(
    websocket: WebSocket, hub: ShellHub, session: str, data_url: str | None
) -> None:
    await websocket.accept()
    try:
        hub.get(session)
    except KeyError as exc:
        await _close(websocket, CLOSE_NOT_FOUND, str(exc.args[0]))
        return
    sender = Sender(websocket)
    if data_url is None:
        await sender.send("error", "this server publishes no scan data (no data Redis)")
        await _close(websocket, 1000, "no scan data")
        return
    from blissng.data import DataStore

    try:
        async with DataStore(data_url) as store, anyio.create_task_group() as tg:
            followed: dict[str, Any] = {}

            async def receive_requests() -> None:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        tg.cancel_scope.cancel()
                        return
                    await _answer(sender, message.get("text"), followed.get("scan"))

            tg.start_soon(receive_requests)
            await _follow(sender, store, session, followed)
    except WebSocketDisconnect:
        pass
    except (OSError, RuntimeError):
        pass


__all__ = ["describe_scan", "serve_plot"]
