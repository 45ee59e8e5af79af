"""blissng.session: ``Session`` (namespace, setup, scan saving, numbering, measurement groups,
output, the commands it owns) and ``Server``, the process's root hosting many sessions.

What the layers above use: a session and its command runner (``submit_source`` ->
``RunningCommand``; ``error_text``/``outcome_text`` say how a command failed, on one line),
the server with its slots for them (``ConsoleHost``, ``WebRunner``, its ``ServerEvents``),
the synchronous facade of devices (``synchronous``), what a GUI shows of an object
(``describe_object``, ``read_positions``) and the sessions of a configuration
(``sessions_from_config``). The implementation modules are private.
"""

from ._background import BackgroundTask, TaskState
from ._command import CommandRunner, RunningCommand, outcome_text
from ._events import ServerEvents
from ._facade import FacadeError, synchronous
from ._object_state import describe_object, read_positions
from ._output import SessionOutput
from ._server import ConsoleHost, Server, ServerError, WebRunner
from ._session import Session, SessionError, SessionSettings
from ._spec import SessionSpec, session_specs, sessions_from_config
from ._typed import compile_input, error_text

__all__ = [
    "BackgroundTask",
    "CommandRunner",
    "ConsoleHost",
    "FacadeError",
    "RunningCommand",
    "Server",
    "ServerError",
    "ServerEvents",
    "Session",
    "SessionError",
    "SessionOutput",
    "SessionSettings",
    "SessionSpec",
    "TaskState",
    "WebRunner",
    "compile_input",
    "describe_object",
    "error_text",
    "outcome_text",
    "read_positions",
    "session_specs",
    "sessions_from_config",
    "synchronous",
]
