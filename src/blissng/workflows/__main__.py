"""``python -m blissng.workflows --redis URL --queue NAME``: a Celery worker for blissng's jobs
(the same as ``blissng worker``)."""

from ._worker import main

if __name__ == "__main__":
    raise SystemExit(main())
