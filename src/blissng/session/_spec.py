"""Sessions described in the configuration: the ``sessions:`` section.

::

    sessions:
      - name: demo
        objects: [m1, m2, simct, MG1]     # default: every object of the configuration
        setup: demo_setup.py              # relative to this YAML file
        scan_saving: {base_path: /data/id00, proposal: blc123}
        workflows: true                   # a JobManager for the session (default)
        connect_timeout: 5.0
      - name: alignment

:func:`session_specs` validates the section (errors name the file, line and field);
:func:`sessions_from_config` builds the :class:`~blissng.session.Session` objects that
the server starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from blissng.config import Config, ConfigError
from blissng.redisdb import RedisUrls
from blissng.scans import ScanSavingValues

from ._session import Session


class SessionSpec(BaseModel):
    """One entry of the ``sessions:`` section."""

    model_config = ConfigDict(extra="forbid")

    name: str
    objects: list[str] | None = None
    setup: Path | None = Field(None, description="setup script, relative to the YAML file")
    scan_saving: dict[str, Any] = Field(default_factory=dict)
    workflows: bool = True
    connect_timeout: float = Field(5.0, gt=0)

    @field_validator("scan_saving")
    @classmethod
    def _saving_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        ScanSavingValues.model_validate(value)
        unknown = set(value) - set(ScanSavingValues.model_fields)
        if unknown:
            raise ValueError(
                f"unknown scan_saving parameter(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(ScanSavingValues.model_fields)}"
            )
        return value

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"session name {value!r} must be an identifier (letters, digits, _)")
        return value


def session_specs(config: Config) -> list[SessionSpec]:
    """The sessions of the configuration's ``sessions:`` section (none without one)."""
    section = config.section("sessions")
    if section is None:
        return []
    specs: list[SessionSpec] = []
    base = Path(section.location.file).parent
    validated = section.validated_items(SessionSpec, "a list of sessions (- name: demo ...)")
    for index, spec in enumerate(validated):
        if any(s.name == spec.name for s in specs):
            raise ConfigError(
                f"session {spec.name!r} is defined twice",
                location=section.location_of(index, "name"),
            )
        known = set(config.names())
        for name in spec.objects or ():
            if name not in known:
                raise ConfigError(
                    f"session {spec.name!r} exposes {name!r}, which is not in the configuration",
                    location=section.location_of(index, "objects"),
                )
        if spec.setup is not None and not spec.setup.is_absolute():
            spec.setup = base / spec.setup
        specs.append(spec)
    return specs


def sessions_from_config(
    config: Config, redis: RedisUrls | None, *, scan_saving: dict[str, Any] | None = None
) -> list[Session]:
    """A :class:`Session` per entry of ``sessions:`` (not started); ``scan_saving`` overrides
    what each entry sets (a test's own ``base_path``)."""
    return [
        Session(
            spec.name,
            config=config,
            objects=spec.objects,
            redis=redis,
            setup_file=spec.setup,
            scan_saving={**spec.scan_saving, **(scan_saving or {})},
            connect_timeout=spec.connect_timeout,
            workflows=spec.workflows,
        )
        for spec in session_specs(config)
    ]
