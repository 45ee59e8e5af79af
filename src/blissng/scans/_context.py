"""What a scan needs from whoever runs it, passed in explicitly: the ``ScanContext``.

The scans layer never imports the session layer (it sits below it). A session builds one
``ScanContext`` and makes it current (:func:`use_context`, a context variable) for the commands
it runs; a test or a script can build one directly. Context variables follow tasks and
``anyio.to_thread`` / ``anyio.from_thread`` calls, so a command typed at a console, run in a
worker thread, finds its session's context on the event loop.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from anyio.lowlevel import EventLoopToken

from blissng.data import Retention, next_scan_number
from blissng.locks import LockManager, lock_timeout
from blissng.redisdb import RedisUrls

from ._hooks import ScanHooks

if TYPE_CHECKING:
    from ._measurement_group import MeasurementGroup
    from ._plot_selection import PlotSelection
    from ._scan import Scan
    from ._scan_saving import ScanSaving


class Output(Protocol):
    """Where commands print (a console's terminal, a web console, a test's buffer)."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


class _LocalNumbering:
    """Scan numbers for a context without Redis (a script, a test): counts in memory."""

    def __init__(self) -> None:
        self.last = 0

    async def __call__(self, dataset_file: str | None = None) -> int:
        async def allocate(at_least: int) -> int:
            self.last = max(self.last + 1, at_least)
            return self.last

        return await next_scan_number(allocate, dataset_file)


@dataclasses.dataclass
class ScanContext:
    """Everything a scan command takes from its session.

    ``redis``: where scan data is published (``None``: not published, kept in memory only).
    ``next_scan_number(dataset_file)``: an async callable giving the next number of a scan
    saved in ``dataset_file`` (None: not saved): a session's is atomic in Redis, and never
    below a number used on disk (``blissng.data.next_scan_number``).
    ``motors``: every motor whose position is snapshotted at scan start.
    ``active_mg``: the measurement group used when a scan is given no counters.
    ``on_scan``: called with each new ``Scan`` (the session keeps the last ones);
    ``last_scan``: the last scan, for the alignment helpers (``cen()``, ``goto_peak()``).
    ``retention``: how long the session's scans stay in Redis (the data layer's TTLs).
    ``objects``: the session's objects by name (``lscnt()``, ``lsobj()``..., and continuous
    scans look up their trigger box); ``plot``: its plot selection (``plotselect``), recorded
    by each scan.

    What a server shares between its sessions comes in here too, never through module-level
    state (two servers in one process keep apart): ``locks``, the :class:`LockManager` that
    scans and motor commands take their devices' locks from; ``hooks``, the
    :class:`~blissng.scans.ScanHooks` every scan runs at its start and end; ``loop``,
    the event loop that a blocking command called from a thread anyio did not start (but that
    carries this context) runs on (:mod:`blissng.scans._bridge`). A context built without
    them has its own lock manager and hooks.
    """

    session: str = "default"
    redis: RedisUrls | None = None
    scan_saving: ScanSaving | None = None
    output: Output | None = dataclasses.field(default_factory=lambda: sys.stdout)
    next_scan_number: Callable[[str | None], Awaitable[int]] = dataclasses.field(
        default_factory=_LocalNumbering
    )
    motors: Callable[[], Sequence[Any]] = lambda: ()
    active_mg: Callable[[], MeasurementGroup | None] = lambda: None
    on_scan: Callable[[Scan], None] | None = None
    last_scan: Callable[[], Scan | None] | None = None
    retention: Retention = dataclasses.field(default_factory=Retention)
    objects: Callable[[], Mapping[str, Any]] = lambda: {}
    plot: PlotSelection | None = None
    snapshot_timeout: float = 2.0
    locks: LockManager = dataclasses.field(default_factory=LockManager)
    hooks: ScanHooks = dataclasses.field(default_factory=ScanHooks)
    loop: EventLoopToken | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    _own_last: Scan | None = dataclasses.field(default=None, repr=False)

    def record_scan(self, scan: Scan) -> None:
        """A new scan was created in this context."""
        self._own_last = scan
        if self.on_scan is not None:
            self.on_scan(scan)

    def get_last_scan(self) -> Scan | None:
        if self.last_scan is not None:
            return self.last_scan()
        return self._own_last

    def lock_devices(
        self, *names: str, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """``async with ctx.lock_devices("m1", "diode"):`` hold the devices for the block
        through this context's lock manager. ``timeout=None`` waits as long as
        :func:`~blissng.locks.lock_timeout` says (0, fail at once, unless the command runs
        in ``waiting_for_locks``)."""
        return self.locks.lock(*names, timeout=lock_timeout() if timeout is None else timeout)

    def print(self, *parts: object, end: str = "\n") -> None:
        """Print to this context's output (nothing when it has none)."""
        if self.output is None:
            return
        self.output.write(" ".join(str(p) for p in parts) + end)
        self.output.flush()


_current: contextvars.ContextVar[ScanContext | None] = contextvars.ContextVar(
    "blissng_scan_context", default=None
)
_default = ScanContext()


def current_context() -> ScanContext:
    """The context of the running command, or a default one (stdout, no Redis)."""
    return _current.get() or _default


@contextlib.contextmanager
def use_context(context: ScanContext) -> Iterator[ScanContext]:
    """Make ``context`` current for the code in the block (and the tasks it starts)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def set_context(context: ScanContext | None) -> contextvars.Token[ScanContext | None]:
    """Make ``context`` current from here on in this task (for a console's task)."""
    return _current.set(context)
