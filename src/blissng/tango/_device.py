"""One Tango device as blissng talks to it: pytango's asyncio API with a timeout on every
call, ``DevFailed`` turned into :class:`~blissng.tango.TangoError`, change events delivered on
the event loop, and reconnection after a server restart.

pytango's asyncio green mode runs each call of the C++ client in a thread of pytango's own
pool and returns an asyncio future: this is how the event loop never blocks on Tango (the
calls that have no green variant here, creating the proxy and (un)subscribing, go to the same
pool). The executor of a proxy is bound to one event loop, so a :class:`TangoDevice` builds
its proxy on the loop that uses it, and again if another loop uses it later (tests run one
loop each).

Every call is bounded by Tango's own client timeout (``set_timeout_millis``: the C++ call
returns ``API_DeviceTimedOut``, so no thread stays stuck); building the proxy and
(un)subscribing also get an anyio deadline a little longer. After a server restart the proxy
reconnects by itself on the next call; the motor controller subscribes to events again.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from blissng.comm import UnknownAddress, lookup_address

from ._errors import (
    CONNECTION_REASONS,
    TangoError,
    TangoNotInstalled,
    TangoTimeout,
    from_dev_failed,
)

DEFAULT_TIMEOUT = 3.0  # seconds, every call
GRACE = 2.0  # seconds beyond Tango's own timeout before the anyio deadline gives up


def import_tango(device: str) -> Any:
    """The ``tango`` module, or a :class:`TangoNotInstalled` naming the extra to install."""
    try:
        import tango
        import tango.asyncio_executor
    except ImportError as exc:
        raise TangoNotInstalled(device, exc) from None
    return tango


def full_name(tango_name: str, tango_host: str | None, *, device: str) -> str:
    """The name pytango is given.

    ``tango_name`` is a device name (``id00/motor/1``) or a full one (``tango://host:port/
    id00/motor/1``, used as is). ``tango_host`` (``host:port``; ``host:port#dbase=no`` for a
    server without database; ``sim://NAME`` for a simulator started at run time) prefixes a
    device name; without it pytango uses the ``TANGO_HOST`` environment variable.
    """
    name = tango_name.strip()
    if name.startswith("tango://") or not tango_host:
        if not name.startswith("tango://") and "TANGO_HOST" not in os.environ:
            raise TangoError(
                device, name, "finding the Tango database", "NoTangoHost",
                "give tango_host (host:port) in the configuration or set TANGO_HOST",
            )  # fmt: skip
        return name
    try:
        host = lookup_address(tango_host.strip())
    except UnknownAddress as exc:
        raise TangoError(
            device, name, "finding the Tango host", "UnknownAddress", str(exc)
        ) from None
    host = host.removeprefix("tango://").rstrip("/")
    suffix = ""
    if host.endswith("#dbase=no"):
        host, suffix = host[: -len("#dbase=no")], "#dbase=no"
    return f"tango://{host}/{name}{suffix}"


class Subscription:
    """A change-event subscription: ``callback(value)`` on the event loop for every event,
    ``on_error(error)`` for an error event (the server gone, events stopped)."""

    def __init__(self, attribute: str, event_id: int) -> None:
        self.attribute = attribute
        self.event_id = event_id
        self.events = 0  # how many arrived (values and errors)


class TangoDevice:
    """A Tango device proxy for blissng objects; ``name`` is the object's (for errors).

    ``calls`` counts the calls made (reads, writes, commands), so tests can tell events from
    polling.
    """

    def __init__(
        self,
        name: str,
        tango_name: str,
        tango_host: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.name = name
        self.tango_name = tango_name
        self.tango_host = tango_host
        self.timeout = timeout
        self.trl = tango_name  # the full name once resolved (connect)
        self.calls = 0
        self._proxy: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: Any = None
        self._connect_lock: anyio.Lock | None = None
        self._subscriptions: dict[int, tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = {}
        self._attribute_names: set[str] | None = None
        self._lost = False  # a call found the server gone: rebuild the proxy first

    def __repr__(self) -> str:
        return f"<TangoDevice {self.name} {self.trl}>"

    # ------------------------------------------------------------------ connection

    async def connect(self) -> Any:
        """The proxy for the running loop (built on first use, again on another loop, and
        again after the server was found gone)."""
        loop = asyncio.get_running_loop()
        if self._proxy is not None and self._loop is loop and not self._lost:
            return self._proxy
        if self._connect_lock is None or self._loop is not loop:
            self._connect_lock = anyio.Lock()
            self._loop = loop
            self._proxy = None
            self._subscriptions.clear()  # they belonged to the other loop's proxy
        async with self._connect_lock:
            if self._lost:
                await self._discard_proxy()
            if self._proxy is None:
                self._proxy = await self._build_proxy(loop)
        return self._proxy

    async def _discard_proxy(self) -> None:
        """After the server was found gone: a new proxy for the next call. The old one's
        cached attribute descriptions can be stale after a restart (pytango then fails a
        write with "unsupported data_format"), and it delays reconnections by a second."""
        self._lost = False
        proxy, self._proxy = self._proxy, None
        if proxy is None:
            return
        for event_id in list(self._subscriptions):
            await self._unsubscribe(proxy, event_id)
        self._subscriptions.clear()
        self._attribute_names = None
        holder = [proxy]
        del proxy
        # The C++ destructor may talk to the server: in the pool, not on the loop.
        await self._in_pool("closing the old connection", holder.clear)

    async def _build_proxy(self, loop: asyncio.AbstractEventLoop) -> Any:
        tango = import_tango(self.name)
        self.trl = full_name(self.tango_name, self.tango_host, device=self.name)
        self._executor = tango.asyncio_executor.AsyncioExecutor(loop=loop)
        build = functools.partial(
            tango.DeviceProxy,
            self.trl,
            green_mode=tango.GreenMode.Asyncio,
            asyncio_executor=self._executor,
        )
        proxy = await self._in_pool("connecting to the device", build)
        proxy.set_timeout_millis(max(1, round(self.timeout * 1000)))
        return proxy

    async def _in_pool(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """A call without a green variant, in pytango's thread pool, bounded and translated."""
        tango = import_tango(self.name)
        try:
            with anyio.fail_after(self.timeout + GRACE):
                return await self._executor.delegate(fn, *args)
        except tango.DevFailed as exc:
            raise from_dev_failed(self.name, self.trl, what, exc) from None
        except TimeoutError:
            raise self._timeout(what) from None

    def _timeout(self, what: str) -> TangoTimeout:
        return TangoTimeout(
            self.name, self.trl, what, "Timeout",
            f"no answer within {self.timeout + GRACE:g} s (timeout {self.timeout:g} s)",
        )  # fmt: skip

    async def _call(self, what: str, method: str, *args: Any) -> Any:
        proxy = await self.connect()
        tango = import_tango(self.name)
        self.calls += 1
        try:
            # Tango's client timeout bounds the call (API_DeviceTimedOut): no second deadline
            # here, it would cost more than a tenth of a fast read.
            return await getattr(proxy, method)(*args)
        except tango.DevFailed as exc:
            error = from_dev_failed(self.name, self.trl, what, exc)
            if error.reason in CONNECTION_REASONS and not isinstance(error, TangoTimeout):
                self._lost = True
            raise error from None

    async def close(self) -> None:
        """Unsubscribe every event and forget the proxy (the next call builds a new one)."""
        proxy, self._proxy = self._proxy, None
        subscriptions = list(self._subscriptions)
        self._subscriptions.clear()
        if proxy is not None and subscriptions and self._loop is asyncio.get_running_loop():
            with anyio.CancelScope(shield=True):
                for event_id in subscriptions:
                    await self._unsubscribe(proxy, event_id)

    # ------------------------------------------------------------------ calls

    async def read(self, attribute: str) -> Any:
        """The value of one attribute (numpy arrays for spectra)."""
        reply = await self._call(f"reading {attribute}", "read_attribute", attribute)
        return reply.value

    async def read_many(self, attributes: Sequence[str]) -> list[Any]:
        """Several attributes in one call; an attribute that failed raises its own error."""
        what = f"reading {', '.join(attributes)}"
        replies = await self._call(what, "read_attributes", list(attributes))
        values = []
        for attribute, reply in zip(attributes, replies, strict=True):
            if reply.has_failed:
                stack = reply.get_err_stack()
                first = stack[0] if stack else None
                raise TangoError(
                    self.name, self.trl, f"reading {attribute}",
                    str(getattr(first, "reason", "unknown")),
                    " ".join(str(getattr(first, "desc", "")).split()),
                )  # fmt: skip
            values.append(reply.value)
        return values

    async def write(self, attribute: str, value: Any) -> None:
        await self._call(f"writing {attribute} = {value!r}", "write_attribute", attribute, value)

    async def command(self, name: str, argument: Any = None) -> Any:
        if argument is None:
            return await self._call(f"command {name}", "command_inout", name)
        return await self._call(f"command {name}({argument!r})", "command_inout", name, argument)

    async def state(self) -> Any:
        """The device's ``tango.DevState`` (reads the State attribute)."""
        return await self.read("State")

    async def attribute_config(self, attribute: str) -> Any:
        return await self._call(
            f"reading the configuration of {attribute}", "get_attribute_config", attribute
        )

    async def attribute_names(self) -> set[str]:
        """The device's attributes (cached for the proxy's life)."""
        if self._attribute_names is None:
            proxy = await self.connect()  # get_attribute_list has no asyncio variant: the pool
            names = await self._in_pool("listing the attributes", proxy.get_attribute_list)
            self._attribute_names = {str(n).lower() for n in names}
        return self._attribute_names

    async def has_attribute(self, attribute: str) -> bool:
        return attribute.lower() in await self.attribute_names()

    # ------------------------------------------------------------------ events

    async def subscribe(
        self,
        attribute: str,
        callback: Callable[..., Any],
        on_error: Callable[[TangoError], Any],
        *,
        timestamps: bool = False,
    ) -> Subscription | None:
        """Subscribe to ``attribute``'s change events, or return None if the device does not
        push them (the caller polls instead).

        ``callback(value)`` and ``on_error(error)`` run on the event loop (the Tango event
        thread hands each event over with ``call_soon_threadsafe``). Tango sends the current
        value at once on subscription. With ``timestamps``, ``callback(value, time)``: the
        server's time of the value, in seconds since the epoch.
        """
        proxy = await self.connect()
        tango = import_tango(self.name)
        loop = asyncio.get_running_loop()
        subscription = Subscription(attribute, -1)
        trl, device = self.trl, self.name

        def deliver(event: Any) -> None:  # in Tango's event thread: hand over, nothing else
            try:
                hand_over(event)
            except RuntimeError:  # the loop closed: a subscription outliving its object
                pass

        def hand_over(event: Any) -> None:
            if event.err:
                first = event.errors[0] if event.errors else None
                error = TangoError(
                    device, trl, f"events of {attribute}",
                    str(getattr(first, "reason", "unknown")),
                    " ".join(str(getattr(first, "desc", "")).split()),
                )  # fmt: skip
                loop.call_soon_threadsafe(_count_and_call, subscription, on_error, error)
            elif timestamps:
                value, stamp = event.attr_value.value, event.attr_value.time.totime()
                loop.call_soon_threadsafe(_count_and_call, subscription, callback, value, stamp)
            else:
                value = event.attr_value.value
                loop.call_soon_threadsafe(_count_and_call, subscription, callback, value)

        subscribe = functools.partial(
            proxy.subscribe_event,
            attribute,
            tango.EventType.CHANGE_EVENT,
            deliver,
            green_mode=tango.GreenMode.Synchronous,
        )
        try:
            subscription.event_id = await self._in_pool(f"subscribing to {attribute}", subscribe)
        except TangoError as exc:
            if exc.reason in ("API_AttributePollingNotStarted", "API_EventPropertiesNotSet"):
                return None  # the device does not push events for it: poll
            raise
        self._subscriptions[subscription.event_id] = (attribute, callback, on_error)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        if self._subscriptions.pop(subscription.event_id, None) is not None:
            proxy = self._proxy
            if proxy is not None:
                await self._unsubscribe(proxy, subscription.event_id)

    async def _unsubscribe(self, proxy: Any, event_id: int) -> None:
        tango = import_tango(self.name)
        unsubscribe = functools.partial(
            proxy.unsubscribe_event, event_id, green_mode=tango.GreenMode.Synchronous
        )
        try:
            await self._in_pool("unsubscribing", unsubscribe)
        except TangoError:
            pass  # the server is gone: nothing left to undo on its side


def _count_and_call(subscription: Subscription, fn: Callable[..., Any], *args: Any) -> None:
    subscription.events += 1
    fn(*args)


def tango_proxy(name: str, tango_host: str | None = None, *, timeout: float = DEFAULT_TIMEOUT):
    """A plain, synchronous ``tango.DeviceProxy`` for shell users and scripts.

    ``name`` as in the configuration's ``tango_name`` (with ``tango_host``, or TANGO_HOST,
    for a device name; ``tango_host="sim://tango"`` for the demo's simulated server); its
    client timeout is ``timeout`` seconds. At the blissng prompt, typed code runs in a worker
    thread, so ``tango_proxy("id00/motor/1").Position`` blocks that thread, never the event
    loop. In async code use :func:`async_tango_proxy`.
    """
    tango = import_tango(name)
    proxy = tango.DeviceProxy(full_name(name, tango_host, device=name))
    proxy.set_timeout_millis(max(1, round(timeout * 1000)))
    return proxy


async def async_tango_proxy(
    name: str, tango_host: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """pytango's asyncio ``DeviceProxy`` on the running loop (``await p.read_attribute(...)``),
    built in pytango's thread pool (the constructor talks to the server)."""
    tango = import_tango(name)
    trl = full_name(name, tango_host, device=name)
    executor = tango.asyncio_executor.AsyncioExecutor(loop=asyncio.get_running_loop())
    build = functools.partial(
        tango.DeviceProxy, trl, green_mode=tango.GreenMode.Asyncio, asyncio_executor=executor
    )
    try:
        proxy = await executor.delegate(build)
    except tango.DevFailed as exc:
        raise from_dev_failed(name, trl, "connecting to the device", exc) from None
    proxy.set_timeout_millis(max(1, round(timeout * 1000)))
    return proxy


__all__ = [
    "DEFAULT_TIMEOUT",
    "Subscription",
    "TangoDevice",
    "async_tango_proxy",
    "full_name",
    "tango_proxy",
]
