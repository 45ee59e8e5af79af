"""Testing with blissng: the pytest plugin and the helpers tests use (docs/testing.md).

The plugin (:mod:`blissng.testing.plugin`, pytest's ``pytest11`` entry point: every project
that installs blissng gets its fixtures without importing anything) runs everything for real:
embedded Redis servers (``redis_urls``, a clean database per test), the simulators (``sims``,
``bad_device``, ``tango_sim``, ``epics_ioc``), a beamline's configuration as users run it
(``blissng_config``, ``blissng_session``, ``scan_context``, ``blissng_server``,
``blissng_client``), a Celery worker (``celery_worker``, a :class:`CeleryWorker`).

The helpers:

- :func:`wait_until` (:func:`wait_until_sync` in a plain test): for a condition no event
  announces, within a deadline; :func:`wait_frames_accounted` for a triggered simulator.
- :class:`RecordingSink`, :func:`subscribe`: what an acquisition chain's channels delivered.
- :func:`redis_scan_context`: scan commands without a ``Session`` (the ``scan_context``
  fixture's context, with your own names).
- :func:`clean_databases` (for a fixture wider than a test), ``RESERVED_DBS`` (the databases
  no test flushes); :func:`start_celery_worker` / :func:`stop_celery_worker`.

pytest imports this package with the plugin in every project that installs blissng, so it
stays cheap: the sink and the scan context load the acquisition and scan layers when a test
uses them, not when the package is imported.
"""

from ._celery import CeleryWorker, start_celery_worker, stop_celery_worker
from ._databases import RESERVED_DBS, clean_databases
from ._scan_context import redis_scan_context
from ._sinks import RecordingSink, subscribe
from ._waiting import wait_frames_accounted, wait_until, wait_until_sync

__all__ = [
    "RESERVED_DBS",
    "CeleryWorker",
    "RecordingSink",
    "clean_databases",
    "redis_scan_context",
    "start_celery_worker",
    "stop_celery_worker",
    "subscribe",
    "wait_frames_accounted",
    "wait_until",
    "wait_until_sync",
]
