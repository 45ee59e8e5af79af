"""The live ``Scan``: one run of an acquisition chain, published, displayed, with its number.

A scan command builds a chain (``blissng.acquisition``), wraps it in a :class:`Scan` and runs
it (unless ``run=False``). Running a scan:

1. checks that the data Redis accepts a new scan (memory guard) and, for a saved scan, the
   saving directory (claimed for this session, writable, free space: in a thread, with a
   timeout); takes the next scan number of the session;
2. snapshots the positions of every motor of the session concurrently, with a timeout, so a
   dead controller delays the scan by at most that timeout and is reported, not waited for;
3. publishes the scan document (with the target file and entry) and streams every channel
   through the data layer's ``ScanPublisher``; runs the start hooks;
4. runs the chain in the scan's task group beside the live display;
5. always: the chain stops every device (shielded), the publisher seals the streams and marks
   the scan ``success``, ``aborted`` (cancelled: Ctrl-C, ``scan.abort()``) or ``failed``; a
   relative scan moves its motors back to where they started; the end hooks run.

``get_data()`` reads the scan back through the reader API (``DataStore``), like any client:
the same code reads a scan of another session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import numpy as np

from blissng.acquisition import AcquisitionChain, ChannelSpec, PauseCondition, ScanControl
from blissng.data import (
    DataStore,
    ScanDocument,
    ScanPublisher,
    abort_reason,
    check_can_start_scan,
    find_channel,
    release_scan_number,
)
from blissng.errors import Aborted, BlissngError
from blissng.locks import DeviceLocked

from ._bridge import command
from ._clients import shared_client
from ._context import ScanContext, current_context
from ._display import ScanTable, follow_scan, scan_table
from ._groups import first_error
from ._hooks import ScanEvent
from ._motor_commands import move_together, read_positions
from ._scan_methods import ScanMethods

log = logging.getLogger(__name__)

RETURN_DEADLINE = 60.0
RELEASE_TIMEOUT = 5.0  # s to remove an unused scan number's reservation
DISPLAY_DRAIN = 5.0  # after the chain, how long the display may take to print the last rows


class ScanError(BlissngError, RuntimeError):
    """A scan cannot run (already ran, bad arguments)."""


class _MemorySink:
    """Keeps a scan's data in memory when there is no Redis to publish it to."""

    def __init__(self) -> None:
        self.batches: dict[str, list[np.ndarray]] = {}

    async def put(self, spec: ChannelSpec, index: int, batch: np.ndarray) -> None:
        self.batches.setdefault(spec.name, []).append(np.array(batch))

    async def end(self, spec: ChannelSpec, length: int) -> None:
        self.batches.setdefault(spec.name, [])

    def data(self, specs: Sequence[ChannelSpec]) -> dict[str, np.ndarray]:
        result = {}
        for spec in specs:
            parts = self.batches.get(spec.name, [])
            result[spec.name] = (
                np.concatenate(parts) if parts else np.empty((0, *spec.shape), spec.dtype)
            )
        return result


class Scan(ScanMethods):
    """A scan: ``number``, ``name``, ``state``, ``run()``, ``get_data()``, ``abort()``.

    ``state``: ``idle`` (built, not run), ``running``, ``done``, ``aborted`` or ``failed``.
    """

    def __init__(
        self,
        chain: AcquisitionChain,
        *,
        name: str,
        title: str = "",
        npoints: int | None = None,
        motors: Sequence[dict[str, Any]] = (),
        save: bool = True,
        scan_info: dict[str, Any] | None = None,
        return_to: Sequence[tuple[Any, float]] = (),
        workflow: Any = None,
        pause_conditions: Sequence[PauseCondition] = (),
        display: bool = True,
        context: ScanContext | None = None,
    ) -> None:
        self.chain = chain
        self.name = name
        self.title = title or name
        self.npoints = npoints
        self.motors = [dict(m) for m in motors]
        self.save = save
        self.scan_info = dict(scan_info or {})
        self.return_to = list(return_to)
        self.workflow = workflow
        self.display = display
        self.control = ScanControl(pause_conditions=list(pause_conditions))
        self.number: int | None = None
        self.scan_id: str | None = None
        self.key: str | None = None
        self.path: str | None = None
        self._reserved_in: str | None = None  # the data set file whose number is reserved
        self.state = "idle"
        self.error: str | None = None
        self.positions: dict[str, float | None] = {}
        self.start_time: float | None = None
        self.end_time: float | None = None
        # The scan document (docs/data-model.md) once the scan runs: its motors name their
        # channels, its channels their roles and labels (what cen() and get_data() resolve).
        self.info: dict[str, Any] | None = None
        self.jobs: list[Any] = []  # workflow jobs submitted for this scan (by end hooks)
        self._context = context
        self._memory: _MemorySink | None = None
        self._redis_url: str | None = None
        self._table: ScanTable | None = None

    # ------------------------------------------------------------------ identity

    def __repr__(self) -> str:
        number = "-" if self.number is None else self.number
        return f"<Scan {number} {self.title!r} {self.state}>"

    @property
    def channels(self) -> list[str]:
        return [c.name for c in self.chain.channels]

    @property
    def context(self) -> ScanContext:
        return self._context if self._context is not None else current_context()

    # ------------------------------------------------------------------ control

    def abort(self) -> None:
        """Stop the scan at the next checkpoint; it ends ``aborted`` (devices stopped)."""
        self.control.abort()

    def pause(self) -> None:
        """Pause between points (devices stay held); ``resume()`` goes on."""
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    # ------------------------------------------------------------------ running

    @command
    async def run(self) -> Scan:
        """Run the scan (once). Returns the scan; raises its error if it failed; a
        cancelled scan (Ctrl-C) is marked aborted and the cancellation goes on."""
        if self.state != "idle":
            raise ScanError(f"scan {self.number} already ran ({self.state}); build a new one")
        self.state = "running"
        ctx = self.context
        self._context = ctx
        try:
            # Every device of the scan, once, for its duration (moves re-enter cheaply).
            async with ctx.lock_devices(*self.device_names()):
                await self._run(ctx)
        except DeviceLocked as exc:
            if self.state == "running":
                self.state, self.error = "failed", str(exc)
            raise
        return self

    def device_names(self) -> list[str]:
        """The devices the scan holds while it runs: the motors it moves, the detectors."""
        names: set[str] = set()
        for node in self.chain.nodes:
            for axis in getattr(node, "axes", ()):
                names.add(axis.name)
            name = getattr(node.device, "name", None)
            if isinstance(name, str):
                names.add(name)
        return sorted(names)

    async def _prepare(self, ctx: ScanContext) -> ScanDocument:
        if ctx.redis is not None:
            await check_can_start_scan(shared_client(ctx.redis.data))
        dataset = None
        if self.save and ctx.scan_saving is not None and ctx.scan_saving.writer != "null":
            self.path = await ctx.scan_saving.prepare()
            dataset = ctx.scan_saving.root_path
        self.number = await ctx.next_scan_number(self.path if dataset is not None else None)
        self._reserved_in = self.path if dataset is not None else None  # given back if unused
        motors = list(ctx.motors())
        positions = await read_positions(motors, ctx.snapshot_timeout) if motors else {}
        snapshot: dict[str, float | None] = {}
        for name, value in positions.items():
            if isinstance(value, Exception):
                ctx.print(f"WARNING: position of {name} not recorded: {value}")
                snapshot[name] = None
            else:
                snapshot[name] = value
        self.positions = snapshot
        metadata = {
            "positioners": snapshot,
            "scan_info": self.scan_info,
            "entry": f"{self.number}.1",
        }
        if dataset is not None and ctx.scan_saving is not None:
            # The writer keeps the same free space as the check above (one rule: scans/fs.py).
            metadata["min_free_mb"] = ctx.scan_saving.min_free_mb
        if ctx.plot is not None:  # the curves the user chose (plotselect / plotinit)
            metadata["plotselect"] = ctx.plot.for_scan()
        if self.workflow is not None:
            metadata["workflow"] = (
                self.workflow if isinstance(self.workflow, str | dict) else str(self.workflow)
            )
        return ScanDocument(
            session=ctx.session,
            number=self.number,
            name=self.name,
            title=self.title,
            dataset=dataset,
            path=self.path,
            save=self.save and self.path is not None,
            npoints=self.npoints,
            motors=self.motors,
            metadata=metadata,
            retention=ctx.retention,
        )

    async def _release_number(self) -> None:
        """The scan ends without having published its document: its number's reservation
        on disk goes (shielded; a file system that does not answer only costs the file)."""
        if self._reserved_in is None or self.number is None:
            return
        dataset_file, self._reserved_in = self._reserved_in, None
        with anyio.CancelScope(shield=True):
            try:
                await release_scan_number(dataset_file, self.number, timeout=RELEASE_TIMEOUT)
            except Exception as exc:
                log.warning("scan %s: its number's reservation stays: %s", self.number, exc)

    def _event(self, phase: str, ctx: ScanContext) -> ScanEvent:
        return ScanEvent(
            phase=phase,
            scan=self,
            scan_id=self.scan_id,
            key=self.key,
            session=ctx.session,
            number=self.number or 0,
            name=self.name,
            state=self.state,
            workflow=self.workflow,
            error=self.error,
            redis_url=self._redis_url,
        )

    async def _run(self, ctx: ScanContext) -> None:
        try:
            document = await self._prepare(ctx)
        except BaseException as exc:
            self.state = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            await self._release_number()
            raise
        ctx.record_scan(self)
        self.start_time = time.time()
        self.info = document.to_json_dict([c.spec for c in self.chain.channels], self.start_time)
        try:
            if ctx.redis is not None:
                self._redis_url = ctx.redis.data
                publisher = ScanPublisher(
                    shared_client(ctx.redis.data), document, self.chain.channels
                )
                try:
                    async with publisher:
                        self._reserved_in = None  # published: the writer removes it
                        self.scan_id = publisher.scan_id
                        self.key = publisher.key
                        await self._run_chain(ctx, publisher)
                except BaseExceptionGroup as group:
                    raise first_error(group) from None
            else:
                self._memory = _MemorySink()
                for channel in self.chain.channels:
                    channel.subscribe(self._memory)
                await self._run_chain(ctx, None)
            self.state = "done"
        except Aborted as exc:
            self.state = "aborted"
            self.error = str(exc)
            raise
        except anyio.get_cancelled_exc_class():
            self.state = "aborted"
            self.error = abort_reason() or "cancelled"
            raise
        except BaseException as exc:
            self.state = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.end_time = time.time()
            await self._release_number()
            await self._return_motors(ctx)
            await self._finish(ctx)

    async def _run_chain(self, ctx: ScanContext, publisher: ScanPublisher | None) -> None:
        await ctx.hooks.run_start_hooks(self._event("start", ctx), ctx.print)
        show = self.display and ctx.output is not None
        if publisher is not None:
            await publisher.set_state("prepared")
            await publisher.set_state("started")
        display_done = anyio.Event()
        try:
            await self._chain_with_display(ctx, publisher, show, display_done)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        if publisher is not None:
            await publisher.close("success")

    async def _chain_with_display(
        self,
        ctx: ScanContext,
        publisher: ScanPublisher | None,
        show: bool,
        display_done: anyio.Event,
    ) -> None:
        async with anyio.create_task_group() as tg:
            if show and publisher is not None:
                tg.start_soon(self._display_from_redis, ctx, display_done)
            else:
                if show:
                    self._display_from_callbacks(ctx)
                display_done.set()
            try:
                await self.chain.run(self.control)
            except Aborted as exc:
                if publisher is not None:
                    with anyio.CancelScope(shield=True):
                        await publisher.close("aborted", str(exc))
                raise
            if publisher is not None:
                await publisher.set_state("stopped")
            # The chain sealed its channels: the display reads to the seals and ends.
            with anyio.move_on_after(DISPLAY_DRAIN):
                await display_done.wait()
            tg.cancel_scope.cancel()

    async def _display_from_redis(self, ctx: ScanContext, done: anyio.Event) -> None:
        assert ctx.output is not None and self.scan_id is not None and ctx.redis is not None
        try:
            view = await DataStore(shared_client(ctx.redis.data)).get_scan(self.scan_id)
            self._table = await follow_scan(view, ctx.output, footer=False)
        except Exception as exc:  # the display never fails the scan
            ctx.print(f"WARNING: live display stopped: {type(exc).__name__}: {exc}")
        finally:
            done.set()

    def _display_from_callbacks(self, ctx: ScanContext) -> None:
        assert ctx.output is not None
        specs = {c.name: c.spec.to_dict() for c in self.chain.channels}
        info = {"channels": specs, "number": self.number, "title": self.title}
        table = scan_table(ctx.output, {**info, "npoints": self.npoints})
        table.header()
        self._table = table

        def on_point(index: int, values: Any) -> None:
            table.add({name: np.atleast_1d(v) for name, v in values.items()})

        self.control.add_point_callback(on_point)

    async def _return_motors(self, ctx: ScanContext) -> None:
        """Relative scans: back to the start positions, whatever happened (shielded)."""
        if not self.return_to:
            return
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + RETURN_DEADLINE
            try:
                await move_together(self.return_to, context=ctx)
            except Exception as exc:
                ctx.print(f"WARNING: could not move motors back to their start: {exc}")
        if scope.cancelled_caught:
            ctx.print(f"WARNING: motors did not return within {RETURN_DEADLINE} s")

    async def _finish(self, ctx: ScanContext) -> None:
        if self._table is not None:
            label = {"done": "Finished", "aborted": "Aborted", "failed": "Failed"}
            self._table.footer(label.get(self.state, self.state), self.error)
        elif self.state != "done" and ctx.output is not None:
            ctx.print(f"Scan {self.number} {self.state}: {self.error}")
        event = self._event("end", ctx)
        await ctx.hooks.run_end_hooks(event, ctx.print)

    # ------------------------------------------------------------------ data & alignment

    @command
    async def get_data(self, channel: str | None = None) -> Any:
        """The scan's data, ``{channel: numpy array}`` (read back from Redis), or one channel's
        array: ``scan.get_data("diode")`` (a full name or an unambiguous short one)."""
        if self._memory is not None:
            data = self._memory.data([c.spec for c in self.chain.channels])
        elif self.scan_id is not None and self._redis_url is not None:
            data = await read_scan_data(self._redis_url, self.scan_id)
        else:
            raise ScanError(f"scan {self.title!r} has not run: no data (call run() first)")
        if channel is None:
            return data
        return data[find_channel(self.describe(), channel)]

    def describe(self) -> dict[str, Any]:
        """The scan document (before the scan runs: its channels and motors as they will be)."""
        if self.info is not None:
            return self.info
        specs = [c.spec for c in self.chain.channels]
        return ScanDocument(
            session="-", number=0, name=self.name, motors=self.motors, save=False
        ).to_json_dict(specs, 0.0)


async def read_scan_data(redis_url: str, scan_id: str) -> dict[str, np.ndarray]:
    """Every channel of a scan, read through the reader API (any session's scan)."""
    store = DataStore(shared_client(redis_url))
    view = await store.get_scan(scan_id)
    data = {}
    for name, channel in view.channels.items():
        data[name] = await channel.get(0)
    return data


ScanFactory = Callable[..., Scan]
