"""AcquirableSlave: adapts any :class:`~blissng.devices.Acquirable` into a chain node.

One slave per counter controller (or MCA, camera): its counters are read together in one
``read`` call and each counter becomes one channel named ``"<controller>:<counter>"``. A
counter with ``kind = "reference"`` (2D frames kept in files) makes a reference channel.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import anyio
import numpy as np

from blissng.devices import Acquirable, AcquisitionParameters, TriggerMode

from ._channels import Channel, ChannelSpec
from ._node import AcquisitionSlave

log = logging.getLogger(__name__)


class AcquirableSlave(AcquisitionSlave):
    """A slave over an :class:`Acquirable`.

    ``count_time``/``npoints`` default to the master's (the nearest ancestor with a
    ``count_time``, and the parent's ``npoints``), resolved when the chain is built.
    ``counters`` selects a subset of the device's counters by name (default: all).

    Software mode: ``trigger`` -> ``device.trigger()``; ``read`` -> ``device.read()`` (polled
    until the point arrives, at most ``read_timeout`` after the count time); the point stays
    pending until the chain commits it. ``read`` must return arrays the device does not modify
    afterwards (committed points are kept until the next flush).
    Hardware mode: ``start`` arms the device, and the ``reading`` loop started once per scan
    polls ``device.read()`` every ``poll_interval`` and emits whatever arrived, until
    ``npoints`` points (``npoints * frames_per_trigger``) have been read (points beyond are
    not kept: a free-running device may count on). Buffered devices hand over many points
    per ``read``; the loop checkpoints after each batch.
    """

    def __init__(
        self,
        device: Acquirable,
        *,
        count_time: float | None = None,
        npoints: int | None = None,
        trigger_type: TriggerMode = TriggerMode.SOFTWARE,
        counters: list[str] | None = None,
        frames_per_trigger: int = 1,
        prepare_once: bool = True,
        start_once: bool = True,
        poll_interval: float = 0.005,
        read_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            device.name,
            device=device,
            npoints=npoints if npoints is not None else 1,
            trigger_type=trigger_type,
            prepare_once=prepare_once,
            start_once=start_once,
        )
        self.acquirable = device
        self.count_time = count_time
        self._npoints_given = npoints is not None
        self.frames_per_trigger = frames_per_trigger
        self.poll_interval = poll_interval
        self.read_timeout = read_timeout
        self.has_reading = trigger_type is TriggerMode.HARDWARE
        wanted = None if counters is None else set(counters)
        self._keys: list[tuple[str, Channel]] = []
        for counter in device.counters:
            if wanted is not None and counter.name not in wanted:
                continue
            reference = getattr(counter, "kind", "data") == "reference"
            spec = ChannelSpec(
                name=f"{device.name}:{counter.name}",
                dtype=counter.dtype,
                shape=() if reference else tuple(counter.shape),
                unit=counter.unit,
                device=device.name,
                kind="reference" if reference else "data",
            )
            self._keys.append((counter.name, self.add_channel(spec)))
        if wanted is not None:
            missing = wanted - {key for key, _ in self._keys}
            if missing:
                known = ", ".join(c.name for c in device.counters)
                raise ValueError(
                    f"{device.name} has no counter {', '.join(sorted(missing))} (it has {known})"
                )
        self._pending: Mapping[str, np.ndarray] | None = None
        self._committed: list[Mapping[str, np.ndarray]] = []
        self.points_read = 0
        self.done: anyio.Event | None = None

    # -- parameters ---------------------------------------------------------------------------
    def resolve(self) -> None:
        """Take count_time and npoints from the masters when not given (called by the chain)."""
        if not self._npoints_given and self.parent is not None:
            self.npoints = self.parent.npoints
        if self.count_time is None:
            node = self.parent
            while node is not None and getattr(node, "count_time", None) is None:
                node = node.parent
            self.count_time = float(getattr(node, "count_time", 0.0) or 0.0)

    @property
    def parameters(self) -> AcquisitionParameters:
        return AcquisitionParameters(
            count_time=self.count_time or 0.0,
            npoints=self.npoints,
            trigger_mode=self.trigger_type,
            frames_per_trigger=self.frames_per_trigger,
        )

    @property
    def expected_points(self) -> int:
        return self.npoints * self.frames_per_trigger

    # -- lifecycle ----------------------------------------------------------------------------
    def reset(self) -> None:
        self.done = anyio.Event()
        self.points_read = 0
        self._pending = None
        self._committed = []

    async def prepare(self) -> None:
        try:
            await self.acquirable.prepare(self.parameters)
        except Exception as exc:
            raise self.error("prepare", exc) from exc

    async def start(self) -> None:
        try:
            await self.acquirable.start()
        except Exception as exc:
            raise self.error("start", exc) from exc

    async def trigger(self) -> None:
        try:
            await self.acquirable.trigger()
        except Exception as exc:
            raise self.error("trigger", exc) from exc

    async def read(self) -> None:
        try:
            data = await self.acquirable.read()
        except Exception as exc:
            raise self.error("read", exc) from exc
        n = self._count(data)
        if n == 0:
            data = await self._poll_point()
        elif n > self.frames_per_trigger:
            raise self.error(
                "read",
                f"read() returned {n} points after one trigger (expected "
                f"{self.frames_per_trigger}): the points of one trigger would get several indices",
            )
        self._pending = data

    async def _poll_point(self) -> Mapping[str, np.ndarray]:
        """The device had no point yet after trigger: poll until it comes or time runs out."""
        deadline = (self.count_time or 0.0) + self.read_timeout
        with anyio.move_on_after(deadline):
            while True:
                await anyio.sleep(self.poll_interval)
                try:
                    data = await self.acquirable.read()
                except Exception as exc:
                    raise self.error("read", exc) from exc
                if self._count(data):
                    return data
        raise self.error("read", f"no data {deadline:.3g} s after the trigger")

    def _count(self, data: Mapping[str, np.ndarray]) -> int:
        if not self._keys:
            return 1
        key = self._keys[0][0]
        try:
            return len(data[key])
        except KeyError:
            raise self.error("read", f"read() returned no counter {key!r}") from None

    async def wait_ready(self) -> None:
        try:
            await self.acquirable.wait_ready()
        except Exception as exc:
            raise self.error("wait_ready", exc) from exc

    async def stop(self) -> None:
        try:
            await self.acquirable.stop()
        except Exception as exc:
            raise self.error("stop", exc) from exc

    # -- software points ----------------------------------------------------------------------
    def commit(self) -> None:
        data = self._pending
        if data is not None:
            self._pending = None
            self._committed.append(data)
            self.points_read += 1

    async def flush(self) -> None:
        committed = self._committed
        if not committed:
            return
        self._committed = []
        try:
            if len(committed) == 1:
                data = committed[0]
                for key, channel in self._keys:
                    await channel.emit(data[key])
            else:
                for key, channel in self._keys:
                    await channel.emit(np.concatenate([data[key] for data in committed]))
        except KeyError as exc:
            raise self.error("read", f"read() returned no counter {exc}") from None

    def discard(self) -> None:
        self._pending = None

    async def rearm(self, remaining: int) -> None:
        """A device prepared for ``npoints`` triggers refuses one more: after a discarded
        point, stop it and prepare and start it again for the points still to come."""
        if self.is_hardware or self.npoints == 0 or not self.prepare_once:
            return
        await self.stop()
        params = dataclasses.replace(self.parameters, npoints=remaining)
        try:
            await self.acquirable.prepare(params)
        except Exception as exc:
            raise self.error("prepare", exc) from exc
        await self.start()

    def pending_values(self) -> dict[str, np.ndarray]:
        data = self._pending
        if data is None:
            return {}
        return {channel.name: data[key] for key, channel in self._keys if key in data}

    # -- hardware reading loop ----------------------------------------------------------------
    async def reading(self) -> None:
        """Poll the device, emit what arrived; checkpoint between reads; stop at npoints."""
        expected = self.expected_points
        try:
            while expected == 0 or self.points_read < expected:
                try:
                    data = await self.acquirable.read()
                except Exception as exc:
                    raise self.error("reading", exc) from exc
                n = self._count(data)
                if n:
                    if expected and self.points_read + n > expected:
                        # a free-running device keeps counting: the scan wants `expected`
                        keep = expected - self.points_read
                        log.debug("%s: dropping %d points beyond %d", self.name, n - keep, expected)
                        data = {key: data[key][:keep] for key, _ in self._keys}
                        n = keep
                    for key, channel in self._keys:
                        await channel.emit(data[key])
                    self.points_read += n
                    await anyio.lowlevel.checkpoint()
                else:
                    await anyio.sleep(self.poll_interval)
        finally:
            if self.done is not None:
                self.done.set()
