"""blissng.session: ``Session`` (namespace, setup, scan saving, numbering, measurement groups,
output, the commands it owns); the server hosting many sessions lives in ``server``."""

from .command import RunningCommand
from .output import SessionOutput
from .session import Session, SessionError, SessionSettings, compile_source
from .spec import SessionSpec, session_specs, sessions_from_config

__all__ = [
    "RunningCommand",
    "Session",
    "SessionError",
    "SessionOutput",
    "SessionSettings",
    "SessionSpec",
    "compile_source",
    "session_specs",
    "sessions_from_config",
]
