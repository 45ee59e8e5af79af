"""AcquisitionChain: the tree of masters and slaves, and the engine that runs it.

Build it BLISS-style, ``chain.add(master, node)``, then ``await chain.run(control)`` inside the
scan's task group. The run:

1. resolves the nodes' parameters from their masters, resets them;
2. presets ``before_prepare``; ``prepare`` every node, deepest level first, the nodes of one
   level concurrently; presets ``after_prepare``;
3. presets ``before_start``; ``start`` every node, deepest level first (slaves are armed before
   masters fire); hardware nodes' ``reading`` loops start in the chain's task group;
   presets ``after_start``;
4. iterates the top master: at each point, a checkpoint (cancellation, fairness, pause,
   pause conditions), per-iteration presets, per-point prepare/start of the nodes that are
   not ``*_once``, ``top.trigger()`` (which cascades down the tree), ``wait_ready`` of every
   node, a last look at the pause conditions (repeat the point if one fired), then ``commit``
   of the point and the point callbacks; committed points are emitted into the channels in
   batches (``flush``) at least every ``FLUSH_INTERVAL``, before a pause and at the end;
5. always, in a shielded scope with a deadline: presets ``before_stop``, ``stop`` of every
   node (masters first, all of them even if some fail), presets ``after_stop``, and the end of
   every channel (sinks seal their streams).

A failure anywhere cancels the run and raises :class:`AcquisitionError` naming the device and
the phase. ``control.abort()`` raises :class:`~blissng.errors.Aborted` once cleanup is done;
cancellation from outside (Ctrl-C) propagates after the same cleanup.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import anyio
import anyio.lowlevel

from blissng.errors import Aborted

from ._channels import Channel
from ._control import ScanControl, ScanState
from ._errors import AcquisitionError, ChainConfigurationError
from ._node import AcquisitionMaster, AcquisitionNode, fan_out, first_acquisition_error
from ._presets import ChainPreset

log = logging.getLogger(__name__)

#: The hot loop yields to the event loop at least this often (seconds of work).
CHECKPOINT_INTERVAL = 0.001
#: Committed points are emitted into the channels at least this often (seconds).
FLUSH_INTERVAL = 0.01


def _overrides(node: AcquisitionNode, method: str) -> bool:
    return getattr(type(node), method) is not getattr(AcquisitionNode, method)


class AcquisitionChain:
    """A tree of acquisition nodes with one top master.

    ``stop_timeout``: the deadline of the shielded cleanup (stopping every node).
    ``readout_timeout``: after the last point, how long hardware reading loops may take to
    get their last points (a free-running device under a software timer).
    """

    def __init__(
        self,
        presets: list[ChainPreset] | None = None,
        *,
        stop_timeout: float = 5.0,
        readout_timeout: float = 10.0,
    ) -> None:
        self.presets: list[ChainPreset] = list(presets or [])
        self.stop_timeout = stop_timeout
        self.readout_timeout = readout_timeout
        self._nodes: list[AcquisitionNode] = []
        self._running = False

    # -- building -----------------------------------------------------------------------------
    def add(self, master: AcquisitionMaster, node: AcquisitionNode) -> AcquisitionNode:
        """Put ``node`` under ``master`` (adding ``master`` as the top if it is new)."""
        if not isinstance(master, AcquisitionMaster):
            raise ChainConfigurationError(
                f"{master.name} is a slave; only masters can have nodes under them"
            )
        if node in self._nodes:
            raise ChainConfigurationError(f"{node.name} is already in the chain")
        if master not in self._nodes:
            if self._nodes:
                raise ChainConfigurationError(
                    f"{master.name} is not in the chain; add it under a master first"
                )
            self._nodes.append(master)
        master.add_child(node)
        self._nodes.append(node)
        return node

    def add_preset(self, preset: ChainPreset) -> None:
        self.presets.append(preset)

    @property
    def top(self) -> AcquisitionMaster:
        if not self._nodes:
            raise ChainConfigurationError("the chain is empty; add(master, node) first")
        top = self._nodes[0]
        assert isinstance(top, AcquisitionMaster)
        return top

    @property
    def nodes(self) -> list[AcquisitionNode]:
        """Every node, top master first, in the order they were added."""
        return list(self._nodes)

    @property
    def channels(self) -> list[Channel]:
        """Every channel of every node (subscribe sinks to these before ``run``)."""
        return [channel for node in self._nodes for channel in node.channels]

    def levels(self) -> list[list[AcquisitionNode]]:
        """Nodes grouped by depth, the top master's level first."""
        result: list[list[AcquisitionNode]] = []
        level: list[AcquisitionNode] = [self.top]
        while level:
            result.append(level)
            level = [c for n in level if isinstance(n, AcquisitionMaster) for c in n.children]
        return result

    def walk(self) -> Iterator[tuple[int, AcquisitionNode]]:
        """(depth, node), depth first: for displaying the tree."""

        def visit(node: AcquisitionNode, depth: int) -> Iterator[tuple[int, AcquisitionNode]]:
            yield depth, node
            if isinstance(node, AcquisitionMaster):
                for child in node.children:
                    yield from visit(child, depth + 1)

        return visit(self.top, 0)

    def __str__(self) -> str:
        return "\n".join(f"{'  ' * depth}{node!r}" for depth, node in self.walk())

    # -- running ------------------------------------------------------------------------------
    async def run(self, control: ScanControl | None = None) -> ScanControl:
        """Run the scan to its end; return the control (state DONE).

        Raises :class:`AcquisitionError` (device and phase) on failure, :class:`Aborted`
        after ``control.abort()``; re-raises outside cancellation after cleanup.
        """
        if self._running:
            raise RuntimeError("this chain is already running")
        if any(channel.ended for channel in self.channels):
            raise RuntimeError(
                "this chain has already run and its channels are sealed: build a new chain "
                "for each scan"
            )
        control = control if control is not None else ScanControl()
        top = self.top
        levels = self.levels()
        for node in self._nodes:
            node.resolve()
        for node in self._nodes:
            node.reset()
        control.npoints = top.iterations if top.iterations != 1 else top.npoints
        self._running = True
        error: BaseException | None = None
        scope = anyio.CancelScope()
        control.attach_scope(scope)
        try:
            with scope:
                try:
                    async with anyio.create_task_group() as tg:
                        await self._run(control, levels, tg)
                except BaseExceptionGroup as group:
                    first = first_acquisition_error(group)
                    raise first from first.__cause__
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._running = False
            await self._cleanup(control, error)
        if scope.cancelled_caught or control.abort_requested:
            control.set_state(ScanState.ABORTED)
            raise Aborted("scan aborted; every device has been stopped")
        return control

    async def _run(
        self, control: ScanControl, levels: list[list[AcquisitionNode]], tg: anyio.abc.TaskGroup
    ) -> None:
        control.set_state(ScanState.PREPARING)
        deepest_first = list(reversed(levels))
        await self._presets("before_prepare")
        for level in deepest_first:
            await fan_out([n.prepare for n in level])
        await self._presets("after_prepare")
        await self._presets("before_start")
        for level in deepest_first:
            await fan_out([n.start for n in level])
            for node in level:
                if node.has_reading:
                    tg.start_soon(node.reading, name=f"{node.name} reading")
        masters = [n for n in self._nodes if isinstance(n, AcquisitionMaster)]
        for master in masters:
            master.start_workers(tg)
        await self._presets("after_start")
        control.set_state(ScanState.RUNNING)
        try:
            await self._iterate(control, deepest_first)
        finally:
            for master in masters:
                master.close_workers()
        for master in masters:
            await master.wait_readings(self.readout_timeout)
        control.set_state(ScanState.STOPPING)

    async def _iterate(
        self, control: ScanControl, deepest_first: list[list[AcquisitionNode]]
    ) -> None:
        top = self.top
        nodes = [n for level in deepest_first for n in level]
        per_point_prepare = [n for n in nodes if not n.prepare_once]
        per_point_start = [n for n in nodes if not n.start_once]
        ready_calls = [n.wait_ready for n in nodes if _overrides(n, "wait_ready")]
        committers = [n for n in reversed(nodes) if _overrides(n, "commit")]
        commit_calls = [n.commit for n in committers]
        flush = self._flush
        before = [p for p in self.presets if p.overrides("before_iteration")]
        after = [p for p in self.presets if p.overrides("after_iteration")]
        conditions = control.pause_conditions
        callbacks = control.has_point_callbacks
        trigger = top.trigger
        iterations = top.iterations
        checkpoint = anyio.lowlevel.checkpoint
        clock = time.perf_counter
        last_yield = last_flush = clock()
        index = 0
        first = True
        while iterations == 0 or index < iterations:
            now = clock()
            if now - last_yield >= CHECKPOINT_INTERVAL or control.abort_requested:
                await checkpoint()
                last_yield = clock()
            if control.pause_requested:
                await flush()
                await control.wait_resumed()
            if conditions:
                holding = await control.first_holding()
                if holding is not None:
                    await flush()
                    await control.wait_conditions_clear(holding)
            for preset in before:
                await self._preset(preset, "before_iteration", index)
            if not first:
                for node in per_point_prepare:
                    await node.prepare()
                for node in per_point_start:
                    await node.start()
            first = False
            await trigger()
            for wait_ready in ready_calls:
                await wait_ready()
            if conditions:
                holding = await control.first_holding()
                if holding is not None:
                    for node in committers:
                        node.discard()
                    control.repeated_points += 1
                    log.warning("point %d interrupted by %s: it will be repeated", index, holding)
                    await flush()
                    await control.wait_conditions_clear(holding)
                    remaining = iterations - index if iterations else 0
                    for node in nodes:  # deepest first, as at start
                        await node.rearm(remaining)
                    continue
            if callbacks:
                values = {}
                for node in committers:
                    values.update(node.pending_values())
            for commit in commit_calls:
                commit()
            control.point_index = index + 1
            if clock() - last_flush >= FLUSH_INTERVAL:
                await flush()
                last_flush = clock()
            if callbacks:
                control.notify_point(index, values)
            for preset in after:
                await self._preset(preset, "after_iteration", index)
            index += 1
        await flush()

    async def _flush(self) -> None:
        """Emit every node's committed points into its channels."""
        for node in self._nodes:
            await node.flush()

    async def _preset(self, preset: ChainPreset, phase: str, *args: object) -> None:
        try:
            await getattr(preset, phase)(self, *args)
        except Exception as exc:
            raise AcquisitionError(preset.label, f"preset {phase}", exc) from exc

    async def _presets(self, phase: str) -> None:
        for preset in self.presets:
            if preset.overrides(phase):
                await self._preset(preset, phase)

    async def _cleanup(self, control: ScanControl, error: BaseException | None) -> None:
        """Stop every node, masters first, then end every channel: shielded from the
        cancellation that may have ended the run, each step within ``stop_timeout`` so that
        one device that hangs in ``stop`` cannot keep the others running."""
        stop_errors: list[BaseException] = []

        async def bounded(label: str, phase: str, call: Callable[[], Awaitable[object]]) -> None:
            with anyio.move_on_after(self.stop_timeout) as step:
                try:
                    await call()
                except Exception as exc:
                    failure = (
                        exc
                        if isinstance(exc, AcquisitionError)
                        else AcquisitionError(label, phase, exc)
                    )
                    log.error("%s", failure)
                    stop_errors.append(failure)
            if step.cancelled_caught:
                failure = AcquisitionError(
                    label, phase, f"did not return within {self.stop_timeout:g} s"
                )
                log.error("%s", failure)
                stop_errors.append(failure)

        with anyio.CancelScope(shield=True):
            for preset in self.presets:
                if preset.overrides("before_stop"):
                    await bounded(
                        preset.label,
                        "preset before_stop",
                        functools.partial(preset.before_stop, self),
                    )
            for level in self.levels():
                for node in level:
                    await bounded(node.name, "stop", node.stop)
            for preset in self.presets:
                if preset.overrides("after_stop"):
                    await bounded(
                        preset.label,
                        "preset after_stop",
                        functools.partial(preset.after_stop, self),
                    )
            for node in self._nodes:  # points committed before an error or abort are good
                await bounded(node.name, "flush", node.flush)
            for channel in self.channels:
                await bounded(channel.name, "end", channel.end)
        if error is None and not control.abort_requested:
            if stop_errors:
                control.set_state(ScanState.FAILED)
                raise stop_errors[0]
            control.set_state(ScanState.DONE)
        elif isinstance(error, Exception):
            control.set_state(ScanState.FAILED)
            for extra in stop_errors:
                error.add_note(f"also: {extra}")
        else:
            control.set_state(ScanState.ABORTED)
