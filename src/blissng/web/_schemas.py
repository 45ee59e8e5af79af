"""The JSON the API answers with and the bodies it takes, as pydantic models.

The OpenAPI description's components are derived from these models
(:func:`blissng.web._openapi.component_schemas`), and the tests validate the API's real
answers with them, so the description says what the server sends. The endpoints build their
answers as plain dicts (from the session layer's summaries); these models describe them, they
do not make them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from blissng.session import TaskState


class Error(BaseModel):
    """Every error answer."""

    error: str = Field(description="what went wrong")


class CommandRequest(BaseModel):
    """The body of ``POST /api/sessions/{session}/commands``."""

    source: str = Field(description="Python, as typed at a console")
    wait: bool = Field(True, description="answer when the command ends (else at once)")
    timeout: float | None = Field(None, description="seconds to wait at most")


class Scan(BaseModel):
    """A scan a command ran (or started)."""

    scan_id: str | None = None
    key: str | None = None
    number: int | None = None
    title: str | None = None
    state: str | None = None


class Command(BaseModel):
    """A command of a session, typed at a console or sent to the API."""

    id: int
    text: str
    origin: str = Field(description="a console id, 'api', 'api:<client>' or 'session'")
    state: Literal["pending", "running", "done", "failed", "cancelled"]
    result: str | None = Field(description="the result as text (repr)")
    error: str | None = Field(description="the error on one line")
    output: str = Field("", description="what it printed (not in a list of commands)")
    scan: Scan | None = Field(None, description="the scan it returned, if it did")
    start_time: float
    end_time: float | None


class Commands(BaseModel):
    session: str
    commands: list[Command]


class Object(BaseModel):
    """What a GUI shows of an object (no I/O)."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    class_: str = Field(alias="class", description="its Python class")
    kind: Literal["motor", "counters", "object"]
    position: float | None = Field(None, description="a motor's last known position")
    state: str | None = Field(None, description="a motor's state")
    unit: str | None = None
    limits: list[float | None] | str | None = Field(
        None, description="a motor's (low, high), or why they could not be read"
    )
    counters: list[str] | None = Field(None, description="a counter controller's counters")


class Objects(BaseModel):
    session: str
    objects: list[Object]


class LastScan(BaseModel):
    number: int | None
    title: str | None
    state: str | None
    scan_id: str | None


class SessionCommand(BaseModel):
    """A command still running, in a session's summary."""

    id: int
    text: str
    state: str


class Session(BaseModel):
    """A session's summary."""

    name: str
    started: bool
    objects: list[str]
    motors: list[str]
    errors: dict[str, str] = Field(description="the objects that could not be built, and why")
    setup_error: str | None
    measurement_groups: list[str]
    active_mg: str | None
    scan_saving: dict[str, Any]
    last_scan: LastScan | None
    commands: list[SessionCommand]


class Sessions(BaseModel):
    sessions: list[Session]


class BackgroundTask(BaseModel):
    state: TaskState = Field(description="'failing': its last step failed on a device")
    period: float | None
    owner: str | None
    error: str | None
    jitter: dict[str, Any]


class Writer(BaseModel):
    pid: int | None
    starts: int


class RedisUrls(BaseModel):
    settings: str
    data: str


class Server(BaseModel):
    """The server: its sessions, background tasks, writer and Redis URLs."""

    sessions: list[Session]
    background: dict[str, BackgroundTask]
    writer: Writer | None
    redis: RedisUrls | None


class Lock(BaseModel):
    device: str
    holder: dict[str, str]
    description: str
    since: float
    where: str = Field(description="'local' (this process) or 'redis' (another process)")
    expires_in: float | None


class Locks(BaseModel):
    locks: list[Lock]
