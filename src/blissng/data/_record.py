"""The publisher's record of its scan besides the channels: the hash, the state stream, the
expiry, and what of them Redis has; pure (no Redis), the commands built by the caller.

Everything is kept to be written again if Redis loses the scan (a restart, a flush).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from . import _keys as keys
from ._document import STATES, ScanDocument, now


@dataclasses.dataclass
class ScanRecord:
    """The scan hash (``fields``, those not yet in Redis in ``dirty``), the state entries
    (the first ``states_sent`` in Redis) and the TTL to set once everything else is there."""

    scan_id: str
    fields: dict[str, str]
    states: list[dict[str, str]]
    dirty: set[str] = dataclasses.field(default_factory=set)
    states_sent: int = 1
    """``created`` is written with the hash, in one transaction."""
    expire_ttl: int | None = None
    expire_sent: bool = False

    @classmethod
    def new(cls, document: ScanDocument, channel_specs: Iterable[object]) -> ScanRecord:
        start = now()
        doc_json = document.to_json_dict(channel_specs, start)  # type: ignore[arg-type]
        return cls(
            document.id,
            {
                "id": document.id,
                "doc": json.dumps(doc_json),
                "state": "created",
                "start_time": repr(start),
            },
            [{"state": "created", "time": repr(start)}],
        )

    @property
    def state(self) -> str:
        return self.states[-1]["state"]

    def check_advance(self, state: str) -> None:
        """ValueError unless the scan may go to ``state`` now."""
        if state not in STATES or state in ("created", "closed"):
            raise ValueError(
                f"scan state must be one of prepared, started, stopped (close() writes "
                f"closed), got {state!r}"
            )
        if STATES.index(state) <= STATES.index(self.state):
            raise ValueError(
                f"scan {self.scan_id} is {self.state!r}: it cannot go back to {state!r}"
            )

    def advance(self, state: str) -> int:
        """Record ``prepared``, ``started`` or ``stopped``; the number of state entries that
        must be in Redis for it to be there."""
        self.check_advance(state)
        self._append({"state": state, "time": repr(now())})
        return len(self.states)

    def close(self, end_reason: str, error: str | None, unsaved_ttl: int | None) -> None:
        """The end: ``closed`` with its reason; an unsaved scan's TTL starts (a saved one's
        when the writer marks it written)."""
        end_time = repr(now())
        self.fields.update(end_time=end_time, end_reason=end_reason, error=error or "")
        self.dirty.update(("end_time", "end_reason", "error"))
        self._append(
            {"state": "closed", "time": end_time, "end_reason": end_reason, "error": error or ""}
        )
        self.expire_ttl = unsaved_ttl

    def _append(self, fields: dict[str, str]) -> None:
        self.states.append(fields)
        self.fields["state"] = fields["state"]
        self.dirty.add("state")

    def sendable_states(self, sealed: bool) -> range:
        """The state entries to send now: ``closed`` only once every stream is ``sealed``."""
        ready = len(self.states)
        if self.state == "closed" and not sealed:
            ready -= 1
        return range(self.states_sent, ready)

    def expire_due(self, states: range, sealed: bool) -> bool:
        """Send the TTL with these states: the last of everything."""
        return (
            self.expire_ttl is not None
            and not self.expire_sent
            and states.stop == len(self.states)
            and sealed
        )

    def sent(self, fields: dict[str, str], states: range, expire: bool) -> None:
        """Redis has these hash fields, state entries and (``expire``) the TTL."""
        for field, value in fields.items():
            if self.fields[field] == value:
                self.dirty.discard(field)
        self.states_sent = max(self.states_sent, states.stop)
        self.expire_sent = self.expire_sent or expire

    @property
    def all_sent(self) -> bool:
        return (
            self.states_sent == len(self.states)
            and not self.dirty
            and (self.expire_ttl is None or self.expire_sent)
        )

    def state_key(self) -> str:
        return keys.state_key(self.scan_id)
