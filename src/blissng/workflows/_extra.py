"""Is the ``workflows`` extra installed? Asked before a job starts, so the error says what to do.

The check looks the packages up (``importlib.util.find_spec``) without importing them: ewoks
costs about a second to import and the client process never runs a task itself.
"""

from __future__ import annotations

import importlib.util

from ._errors import WorkflowsNotInstalled

INSTALL_HINT = "pip install 'blissng[workflows]'"


_found: set[str] = set()  # once there, a package stays (the look-up reads directories)


def _missing(modules: tuple[str, ...]) -> list[str]:
    missing = []
    for name in modules:
        if name in _found:
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            _found.add(name)
        else:
            missing.append(name)
    return missing


def require_workflows_extra(executor: str = "local") -> None:
    """Raise :class:`WorkflowsNotInstalled`, naming the extra, if ``executor`` lacks a package."""
    modules = ("ewoks", "celery") if executor == "celery" else ("ewoks",)
    missing = _missing(modules)
    if missing:
        raise WorkflowsNotInstalled(
            f"running workflows needs {', '.join(missing)}, from blissng's 'workflows' extra: "
            f"install it with {INSTALL_HINT}"
        )
