"""``python -m blissng.workflows.worker --redis URL [--queue NAME] [--concurrency N]``: a Celery
worker for blissng's jobs (what ``blissng worker`` runs)."""

from __future__ import annotations

import argparse

from .settings import CELERY_DB, DEFAULT_QUEUE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="blissng worker", description=__doc__)
    parser.add_argument(
        "--redis",
        required=True,
        help=f"Redis URL of the broker and results (blissng uses db {CELERY_DB} of its "
        "settings Redis: e.g. unix:///run/blissng/settings.sock?db=63)",
    )
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="queue to serve")
    parser.add_argument("--concurrency", type=int, default=2, help="jobs run at once")
    parser.add_argument("--hostname", default=None, help="worker name (default: from queue)")
    parser.add_argument("--loglevel", default="WARNING")
    args = parser.parse_args(argv)
    from . import run_worker

    run_worker(args.redis, args.queue, args.concurrency, args.hostname, args.loglevel)


if __name__ == "__main__":
    main()
