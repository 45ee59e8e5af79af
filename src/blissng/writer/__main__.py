"""``python -m blissng.writer --redis URL``: the writer service alone (``blissng writer``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import anyio

from ._service import run_writer


async def _main(redis_url: str, parent: int | None, fs_timeout: float) -> None:
    async with anyio.create_task_group() as tg:
        if parent is not None:
            tg.start_soon(_exit_with_parent, parent, tg.cancel_scope)
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        await run_writer(redis_url, fs_timeout=fs_timeout)
        tg.cancel_scope.cancel()


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    """SIGTERM (the server stopping its writer) or SIGINT: stop in order, so that a scan the
    data Redis lost is ended in its file and linked before the process exits."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logging.getLogger("blissng.writer").info("%s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


async def _exit_with_parent(parent: int, scope: anyio.CancelScope) -> None:
    """A supervised writer must not outlive a server that was killed."""
    # The pid is given by the parent itself: by the time this runs the parent may already be
    # gone, and os.getppid() would then name whoever adopted us.
    try:
        pidfd = os.pidfd_open(parent)  # readable when that process exits (Linux >= 5.3)
    except ProcessLookupError:
        pidfd = None
    if pidfd is not None:
        try:
            await anyio.wait_readable(pidfd)
        finally:
            os.close(pidfd)
    logging.getLogger("blissng.writer").warning("parent %d is gone: exiting", parent)
    scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blissng writer", description=__doc__)
    parser.add_argument("--redis", required=True, help="URL of the data Redis")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process (the server) dies"
    )
    parser.add_argument(
        "--fs-timeout",
        type=float,
        default=30.0,
        help="seconds a file-system call may take before its file system is reported stuck",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("blissng.writer").info("writer ready on %s", args.redis)
    try:
        anyio.run(_main, args.redis, args.parent_pid, args.fs_timeout)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
