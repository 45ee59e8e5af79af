"""Acquisition nodes: the masters and slaves of a chain, as in BLISS.

A node wraps one device (or none, for a software timer) and exposes the lifecycle the chain
drives: ``prepare``, ``start``, ``trigger``, ``read`` (software: collect the point just
triggered), ``reading`` (hardware: a loop started once per scan that emits data as it comes),
``wait_ready`` and ``stop``.

Data of a software-triggered point is not emitted at once: ``read`` keeps it *pending* and the
chain commits it (``commit``) once the point is known to be good. A pause condition that fires
during a point makes the chain discard the pending data and repeat the point, so no index ever
appears twice in a channel. Committed points are emitted by ``flush``, one batch per channel,
at most every ``FLUSH_INTERVAL`` of the chain (10 ms): at 10,000 points/s a channel gets 100
batches of 100 points, not 10,000 emits. Hardware-triggered nodes emit from their reading loop.

Performance: the per-point path (``trigger``, ``read``, ``wait_ready``, ``commit``) is made of
straight awaits. A master with one child awaits it directly; with several children it wakes
one long-lived worker per child (:class:`ChildWorkers`, started once per scan). Hardware
reading loops are the only other tasks, also started once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio
import anyio.abc
import numpy as np

from blissng.devices import TriggerMode
from blissng.errors import leaf_exceptions

from ._channels import Channel, ChannelSpec
from ._errors import AcquisitionError

#: BLISS calls it the trigger type; it is the devices' trigger mode.
TriggerType = TriggerMode


async def fan_out(calls: Sequence[Callable[[], Coroutine[Any, Any, Any]]]) -> None:
    """Await ``calls`` concurrently; the first failure cancels the others and propagates.

    One call is awaited directly (no task): the common case of a step scan costs nothing.
    """
    if len(calls) == 1:
        await calls[0]()
        return
    if not calls:
        return
    try:
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(call)
    except BaseExceptionGroup as group:
        error = first_acquisition_error(group)
        raise error from error.__cause__


def first_acquisition_error(group: BaseExceptionGroup) -> BaseException:
    """The error to show for a failed group: its first AcquisitionError, else its first error."""
    leaves = leaf_exceptions(group)
    for exc in leaves:
        if isinstance(exc, AcquisitionError):
            return exc
    for exc in leaves:
        if isinstance(exc, Exception):
            return exc
    return leaves[0] if leaves else group


class AcquisitionNode:
    """One node of the chain. Subclasses override the lifecycle methods they need.

    ``npoints`` is the number of points the node makes in the scan (0 = until stopped);
    ``prepare_once``/``start_once`` False make the chain call ``prepare``/``start`` again before
    every iteration of the top master. Errors raised by a device should be wrapped with
    :meth:`error` so that the user sees the device and the phase.
    """

    def __init__(
        self,
        name: str,
        *,
        device: object | None = None,
        npoints: int = 1,
        trigger_type: TriggerMode = TriggerMode.SOFTWARE,
        prepare_once: bool = True,
        start_once: bool = True,
    ) -> None:
        if npoints < 0:
            raise ValueError(f"{name}: npoints must be >= 0 (0 = until stopped), got {npoints}")
        self.name = name
        self.device = device
        self.npoints = npoints
        self.trigger_type = trigger_type
        self.prepare_once = prepare_once
        self.start_once = start_once
        self.parent: AcquisitionMaster | None = None
        self.channels: list[Channel] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} npoints={self.npoints}>"

    # -- helpers ------------------------------------------------------------------------------
    def add_channel(self, spec: ChannelSpec) -> Channel:
        """Create, keep and return the channel this node emits ``spec`` into."""
        channel = Channel(spec)
        self.channels.append(channel)
        return channel

    def error(self, phase: str, cause: BaseException | str) -> AcquisitionError:
        """An :class:`AcquisitionError` naming this node and ``phase``."""
        return AcquisitionError(self.name, phase, cause)

    @property
    def is_hardware(self) -> bool:
        return self.trigger_type is TriggerMode.HARDWARE

    def resolve(self) -> None:
        """Take parameters not given explicitly from the masters (called when the chain runs)."""

    def reset(self) -> None:
        """Forget the state of a previous run (called once per run, in the event loop)."""

    # -- lifecycle ----------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Configure the device for the scan (once, or per iteration if not prepare_once)."""

    async def start(self) -> None:
        """Arm the device (deepest nodes first, so slaves are armed before masters fire)."""

    async def trigger(self) -> None:
        """Software trigger: make one point (a master also triggers its children)."""

    async def read(self) -> None:
        """Software: collect the point just triggered and keep it pending (see ``commit``)."""

    async def acquire(self, until: float = 0.0) -> None:
        """One software point as a child: ``trigger``, wait until ``until``
        (``time.perf_counter()``; 0 = no wait), ``read``. A master child makes its whole point
        in its ``trigger``."""
        await self.trigger()
        if until:
            remaining = until - time.perf_counter()
            if remaining > 0:
                await anyio.sleep(remaining)
        await self.read()

    async def reading(self) -> None:
        """Hardware: run for the whole scan, emitting data as the device produces it.

        Started once per scan in the chain's task group if :attr:`has_reading`. Must
        checkpoint at least every few milliseconds of work.
        """

    has_reading: bool = False

    async def wait_ready(self) -> None:
        """Return when the node can take the next trigger."""

    async def stop(self) -> None:
        """Stop the device. Always called, in a shielded scope with a deadline."""

    # -- pending data of the current point (software points) ----------------------------------
    def commit(self) -> None:
        """The pending point is good: keep it for the next ``flush`` (no I/O per point)."""

    async def flush(self) -> None:
        """Emit the committed points into the channels, one batch per channel."""

    def discard(self) -> None:
        """Forget the pending point (it will be repeated)."""

    async def rearm(self, remaining: int) -> None:
        """A point was discarded and ``remaining`` points (the repeated one included) are
        still to come: re-arm a device that counts its triggers. Nothing by default."""

    def pending_values(self) -> dict[str, np.ndarray]:
        """The pending point by channel name (for point callbacks); empty if none."""
        return {}


class AcquisitionSlave(AcquisitionNode):
    """A node without children: it produces data when triggered (or by hardware pulses)."""


class AcquisitionMaster(AcquisitionNode):
    """A node that drives children: each of its points makes one point of its software children.

    ``iterations`` is how many times the chain calls ``trigger`` on this master when it is the
    top of the chain: its ``npoints`` for step masters, 1 for a hardware master whose single
    trigger produces all the points. A master's ``trigger`` does its own action (move, count)
    and calls :meth:`acquire_children`.
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.children: list[AcquisitionNode] = []
        self._sw_children: list[AcquisitionNode] = []
        self._workers: ChildWorkers | None = None

    @property
    def iterations(self) -> int:
        return self.npoints

    def add_child(self, child: AcquisitionNode) -> None:
        if child.parent is not None:
            raise ValueError(f"{child.name} already has a master ({child.parent.name})")
        child.parent = self
        self.children.append(child)
        self._sw_children = [c for c in self.children if not c.is_hardware]

    async def wait_readings(self, timeout: float) -> None:
        """Wait until every hardware child's reading loop has all its points; fail naming
        the first child still short after ``timeout`` seconds."""
        for child in self.children:
            done = getattr(child, "done", None)
            if not child.has_reading or done is None:
                continue
            with anyio.move_on_after(timeout):
                await done.wait()
            if not done.is_set():
                got = getattr(child, "points_read", "?")
                expected = getattr(child, "expected_points", child.npoints)
                raise AcquisitionError(
                    child.name,
                    "reading",
                    f"got {got} of {expected} points {timeout:g} s after {self.name} finished",
                )

    def start_workers(self, tg: anyio.abc.TaskGroup) -> None:
        """With several software children, start one long-lived worker per child (once per
        scan, in the chain's task group) so that each point fans out without new tasks."""
        if len(self._sw_children) > 1:
            self._workers = ChildWorkers(self._sw_children)
            self._workers.start(tg)

    def close_workers(self) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    async def acquire_children(self, until: float = 0.0) -> None:
        """One point of every software child, concurrently: each is triggered, waits until
        ``until`` (a ``time.perf_counter()`` value; 0 = no wait) and is read."""
        children = self._sw_children
        if len(children) == 1:
            await children[0].acquire(until)
        elif self._workers is not None:
            await self._workers.run(until)
        elif children:
            await fan_out([functools.partial(c.acquire, until) for c in children])


class ChildWorkers:
    """Concurrent points of several children without a task per point.

    The first child's point runs inline, in the master's task; each other child has one
    worker task, started once per scan in the chain's task group and woken at each point by
    one event shared by all workers. The first failure wakes the master at once (it raises;
    the chain's task group then cancels the workers). ``close`` makes the workers return.
    """

    def __init__(self, children: Sequence[AcquisitionNode]) -> None:
        self.children = list(children)
        self._inline = self.children[0]
        self._go: anyio.Event | None = None  # set to start the next round
        self._done: anyio.Event | None = None
        self._pending = 0
        self._error: BaseException | None = None
        self._until = 0.0
        self._closed = False

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        self._go = first_round = anyio.Event()
        for child in self.children[1:]:
            # the first round's event is passed in: the task may start after that round began
            tg.start_soon(self._work, child, first_round, name=f"{child.name} point worker")

    async def _work(self, child: AcquisitionNode, go: anyio.Event) -> None:
        while True:
            await go.wait()
            # the master made the next round's event before setting this one
            go = self._go  # type: ignore[assignment]
            if self._closed:
                return
            try:
                await child.acquire(self._until)
            except Exception as exc:
                if self._error is None:
                    self._error = exc
                if self._done is not None:
                    self._done.set()
            else:
                self._pending -= 1
                if self._pending == 0 and self._done is not None:
                    self._done.set()

    def _start_round(self) -> None:
        go, self._go = self._go, anyio.Event()
        assert go is not None
        go.set()

    async def run(self, until: float) -> None:
        self._until = until
        self._error = None
        self._pending = len(self.children) - 1
        done = self._done = anyio.Event()
        self._start_round()
        await self._inline.acquire(until)
        if self._pending:
            await done.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        self._closed = True
        if self._go is not None:
            self._start_round()
