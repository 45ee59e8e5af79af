"""Task groups raise exception groups; users are shown the one error that matters."""

from __future__ import annotations

import anyio

from blissng.errors import leaf_exceptions


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The exception to show for a task group's failure: the first real error in it."""
    leaves = leaf_exceptions(group)
    cancelled = anyio.get_cancelled_exc_class()
    for exc in leaves:
        if not isinstance(exc, cancelled):
            return exc
    return leaves[0] if leaves else group
