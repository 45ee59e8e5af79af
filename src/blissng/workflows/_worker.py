"""``blissng worker``: a Celery worker for blissng's jobs (for sites that do not run one).

    blissng worker [--redis URL | --broker URL] [--queue NAME] [--concurrency N]

``--redis`` is blissng's Redis as given to ``blissng serve --redis`` (default
``$BLISSNG_REDIS_URL``); the worker then uses its database ``CELERY_DB``, where a session's
``JobManager`` sends jobs by default. ``--broker`` gives the Celery URL exactly (the
configuration's ``workflows.celery_url``). Also ``python -m blissng.workflows ...``.

The CLI runs :func:`main` (``worker_main`` of the face).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from blissng.redisdb import url_with_db

from ._settings import CELERY_DB, DEFAULT_QUEUE


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> Any:
    """Add the ``worker`` sub-command to ``commands`` (an argparse sub-parsers object)."""
    parser = commands.add_parser(
        "worker",
        parents=list(parents),
        help="run a Celery worker for blissng's workflow jobs",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    configure(parser)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("BLISSNG_REDIS_URL") or None,
        help=f"blissng's Redis (as for 'blissng serve'); the worker uses its db {CELERY_DB} "
        "(default: $BLISSNG_REDIS_URL)",
    )
    where.add_argument("--broker", metavar="URL", help="the Celery broker and backend URL exactly")
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="queue to serve (workflows.queue)")
    parser.add_argument("--concurrency", type=int, default=2, help="jobs run at once")
    parser.add_argument("--hostname", default=None, help="worker name (default: from the queue)")
    parser.add_argument("--loglevel", default="WARNING", help="Celery's log level")


def broker_url(args: argparse.Namespace) -> str:
    if args.broker:
        return str(args.broker)
    if args.redis:
        return url_with_db(str(args.redis), CELERY_DB)
    raise SystemExit(
        "blissng worker: give --redis URL (blissng's Redis) or --broker URL, or set "
        "BLISSNG_REDIS_URL"
    )


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the worker until SIGTERM/Ctrl-C (a warm shutdown: running jobs end first)."""
    from ._celery_app import run_worker

    run_worker(broker_url(args), args.queue, args.concurrency, args.hostname, args.loglevel)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blissng worker", description=__doc__)
    configure(parser)
    return cmd_worker(parser.parse_args(argv))
