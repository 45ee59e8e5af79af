"""One PV, over Channel Access (aioca) or PV Access (p4p's asyncio client).

A PV name is plain (``SIM:m1.RBV``: Channel Access), or says its protocol: ``ca://NAME`` or
``pva://NAME`` (as ophyd-async writes them). :func:`pv_for` returns an :class:`EpicsPV` with
the same small interface for both: ``get``, ``put``, ``monitor``, errors that name the PV, and
a timeout on every operation.

Both clients take their addresses from the standard environment variables
(``EPICS_CA_ADDR_LIST``, ``EPICS_CA_SERVER_PORT``, ``EPICS_PVA_ADDR_LIST``...): libca reads
them once per process, p4p when a context is created. Both deliver monitor updates on the
event loop. aioca keeps channels per event loop and p4p needs a context per loop:
:class:`_LoopResources` counts the PVs in use per loop and releases the loop's channels and
context when the last one closes (otherwise libca would call back into a closed loop).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from ._errors import EpicsDisconnected, EpicsError, EpicsNotInstalled, EpicsTimeout

DEFAULT_TIMEOUT = 3.0


def _aioca(device: str) -> Any:
    try:
        import aioca
    except ImportError as exc:
        raise EpicsNotInstalled(device, "aioca", exc) from None
    return aioca


def _p4p_asyncio(device: str) -> Any:
    try:
        import p4p.client.asyncio
    except ImportError as exc:
        raise EpicsNotInstalled(device, "p4p", exc) from None
    return p4p.client.asyncio


class _LoopResources:
    """Per event loop: how many PVs are open, the p4p context; released with the last PV."""

    def __init__(self) -> None:
        self.users: dict[asyncio.AbstractEventLoop, int] = {}
        self.pva: dict[asyncio.AbstractEventLoop, Any] = {}
        self.ca_loops: set[asyncio.AbstractEventLoop] = set()

    def acquire(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        self.users[loop] = self.users.get(loop, 0) + 1
        return loop

    def release(self, loop: asyncio.AbstractEventLoop) -> None:
        left = self.users.get(loop, 0) - 1
        if left > 0:
            self.users[loop] = left
            return
        self.users.pop(loop, None)
        context = self.pva.pop(loop, None)
        if context is not None:
            context.close()
        if loop in self.ca_loops:
            self.ca_loops.discard(loop)
            from aioca import _catools

            # aioca internals (aioca <2.2 in pyproject.toml): one channel cache per loop
            cache = _catools._Context._channel_caches.pop(loop, None)
            if cache is not None:
                cache.purge()

    def pva_context(self, device: str) -> Any:
        loop = asyncio.get_running_loop()
        context = self.pva.get(loop)
        if context is None:
            context = _p4p_asyncio(device).Context("pva")  # EPICS_PVA_* from the environment
            self.pva[loop] = context
        return context


_resources = _LoopResources()


class EpicsPV:
    """A PV as blissng uses it; ``device`` is the owner's name (for errors)."""

    protocol = "ca"

    def __init__(self, device: str, name: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.device = device
        self.name = name
        self.timeout = timeout
        self.gets = 0  # reads made (tests tell monitors from polling by it)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitors: list[Any] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.protocol}://{self.name} of {self.device}>"

    def _open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = _resources.acquire()

    async def close(self) -> None:
        """Close the monitors; the loop's channels go with its last open PV."""
        monitors, self._monitors = self._monitors, []
        for monitor in monitors:
            monitor.close()
        loop, self._loop = self._loop, None
        if loop is not None and loop is asyncio.get_running_loop():
            _resources.release(loop)

    def renew(self) -> None:
        """After a disconnection: close this PV's monitors (the caller monitors again), so
        that the next operation connects afresh."""
        monitors, self._monitors = self._monitors, []
        for monitor in monitors:
            monitor.close()

    async def get(self) -> Any:
        raise NotImplementedError

    async def put(self, value: Any, *, wait: bool = False) -> None:
        raise NotImplementedError

    def monitor(
        self, callback: Callable[[Any], Any], on_error: Callable[[EpicsError], Any]
    ) -> None:
        """``callback(value)`` on every update (the current value first), ``on_error(error)``
        when the PV disconnects; both on the event loop. Closed by :meth:`close`."""
        raise NotImplementedError

    def _error(self, what: str, exc: BaseException) -> EpicsError:
        text = str(exc) or type(exc).__name__
        if text.startswith(f"{self.name}: "):
            text = text[len(self.name) + 2 :]
        if isinstance(exc, TimeoutError) or "timeout" in text.lower():
            return EpicsTimeout(
                self.device, self.name, what, f"{text} (timeout {self.timeout:g} s)"
            )
        if "disconnect" in text.lower():
            return EpicsDisconnected(self.device, self.name, what, text)
        return EpicsError(self.device, self.name, what, text)


class CaPV(EpicsPV):
    """Channel Access through aioca (libca from the epicscorelibs wheel)."""

    protocol = "ca"

    def _open(self) -> None:
        super()._open()
        if self._loop is not None:
            _resources.ca_loops.add(self._loop)

    def renew(self) -> None:
        """Close the monitors and forget the channel, if no one else uses it: a new channel
        searches at once, where libca retries a disconnected one ever more slowly (seconds
        after an IOC restart, without a CA repeater's beacon news)."""
        super().renew()
        loop = self._loop
        if loop is None:
            return
        from aioca import _catools

        # aioca internals (aioca <2.2 in pyproject.toml): it has no per-channel purge, so
        # its cache is reached by name
        cache = _catools._Context._channel_caches.get(loop)
        channels: dict[str, Any] = getattr(cache, "_ChannelCache__channels", None) or {}
        channel = channels.get(self.name)
        if channel is not None and channel.count_subscriptions() == 0:
            del channels[self.name]
            channel._purge()  # aioca internals: what its cache does to a forgotten channel

    async def get(self) -> Any:
        aioca = _aioca(self.device)
        self._open()
        self.gets += 1
        try:
            return await aioca.caget(self.name, timeout=self.timeout)
        except aioca.CANothing as exc:
            raise self._error("reading", exc) from None

    async def get_timed(self) -> tuple[Any, float]:
        """The value and the server's timestamp (seconds since the epoch)."""
        aioca = _aioca(self.device)
        self._open()
        self.gets += 1
        try:
            value = await aioca.caget(self.name, timeout=self.timeout, format=aioca.FORMAT_TIME)
        except aioca.CANothing as exc:
            raise self._error("reading", exc) from None
        return value, float(value.timestamp)

    async def put(self, value: Any, *, wait: bool = False) -> None:
        aioca = _aioca(self.device)
        self._open()
        try:
            await aioca.caput(self.name, value, wait=wait, timeout=self.timeout)
        except aioca.CANothing as exc:
            raise self._error(f"writing {value!r} to", exc) from None

    def monitor(
        self, callback: Callable[[Any], Any], on_error: Callable[[EpicsError], Any]
    ) -> None:
        aioca = _aioca(self.device)
        self._open()

        def deliver(value: Any) -> None:
            if isinstance(value, aioca.CANothing):
                on_error(self._error("monitoring", value))
            else:
                callback(value)

        self._monitors.append(
            aioca.camonitor(self.name, deliver, notify_disconnect=True, format=aioca.FORMAT_TIME)
        )


class PvaPV(EpicsPV):
    """PV Access through p4p's asyncio client (NTScalar, NTScalarArray values)."""

    protocol = "pva"

    async def get(self) -> Any:
        value, _ = await self.get_timed()
        return value

    async def get_timed(self) -> tuple[Any, float]:
        context = _resources.pva_context(self.device)
        self._open()
        self.gets += 1
        try:
            # asyncio.timeout: p4p's asyncio client has no timeout of its own; an anyio
            # deadline, or wait_for (a task per call), cost a fifth of a round trip here.
            async with asyncio.timeout(self.timeout):
                value = await context.get(self.name)
        except Exception as exc:
            raise self._error("reading", exc) from None
        return value, float(getattr(value, "timestamp", math.nan))

    async def put(self, value: Any, *, wait: bool = False) -> None:
        context = _resources.pva_context(self.device)
        self._open()
        try:
            async with asyncio.timeout(self.timeout):
                await context.put(self.name, value, wait=wait, get=False)
        except Exception as exc:
            raise self._error(f"writing {value!r} to", exc) from None

    def monitor(
        self, callback: Callable[[Any], Any], on_error: Callable[[EpicsError], Any]
    ) -> None:
        context = _resources.pva_context(self.device)
        self._open()

        async def deliver(value: Any) -> None:  # p4p awaits it on the loop, in order
            if isinstance(value, Exception):
                on_error(self._error("monitoring", value))
            else:
                callback(value)

        self._monitors.append(context.monitor(self.name, deliver, notify_disconnect=True))


def pv_for(device: str, name: str, *, timeout: float = DEFAULT_TIMEOUT) -> EpicsPV:
    """The PV ``name`` (``ca://`` or ``pva://`` prefix, Channel Access without one)."""
    if name.startswith("pva://"):
        return PvaPV(device, name[len("pva://") :], timeout=timeout)
    return CaPV(device, name.removeprefix("ca://"), timeout=timeout)


def now() -> float:
    """Seconds since the epoch, as EPICS timestamps count."""
    return time.time()


__all__ = ["DEFAULT_TIMEOUT", "CaPV", "EpicsPV", "PvaPV", "pv_for"]
