"""The ``workflows:`` section of the configuration.

```yaml
workflows:
  executor: celery          # or local (the default)
  queue: id99-workflows     # the Celery queue blissng submits to
  celery_url: redis://...   # broker and result backend; default: the settings Redis, db 63
  local_workers: 2          # processes of the local executor
  job_ttl: 86400            # seconds a finished job's document stays in Redis
  graphs:                   # workflows by name: run_job("fit")
    fit: workflows/fit.json #   a file, relative to the configuration directory
    inline: {nodes: [...]}  #   or the graph itself
```
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blissng.redisdb import DATABASES, url_with_db

from ._errors import WorkflowError

# The database of the settings Redis where Celery keeps its queues and results. The test plugin
# never flushes it (blissng.testing.RESERVED_DBS).
CELERY_DB = DATABASES - 1
DEFAULT_QUEUE = "blissng"


class WorkflowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    executor: Literal["local", "celery"] = "local"
    queue: str = DEFAULT_QUEUE
    celery_url: str | None = None
    local_workers: int = Field(2, ge=1)
    warm_workers: int = Field(0, ge=0)
    job_ttl: float = Field(24 * 3600, gt=0)
    graphs: dict[str, str | dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | WorkflowSettings | None) -> WorkflowSettings:
        """Validate the configuration's ``workflows:`` mapping; errors say which key."""
        if section is None:
            return cls.model_validate({})
        if isinstance(section, WorkflowSettings):
            return section
        try:
            return cls.model_validate(dict(section))
        except ValidationError as exc:
            problems = "; ".join(
                f"workflows.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise WorkflowError(f"invalid workflows configuration: {problems}") from None


def settings_from_config(config: Any) -> tuple[WorkflowSettings, Path | None]:
    """The ``workflows:`` section of a ``blissng.config.Config`` (defaults when it has none),
    and the directory its relative workflow files are read from (that of the file defining
    the section). Errors name the file and line."""
    section = config.section("workflows")
    if section is None:
        return WorkflowSettings.from_section(None), Path(config.directory)
    if not isinstance(section.value, Mapping):
        raise WorkflowError(f"{section.location}: workflows: is a mapping of settings")
    try:
        settings = WorkflowSettings.model_validate(dict(section.value))
    except ValidationError as exc:
        first = exc.errors()[0]
        path = tuple(str(p) for p in first["loc"])
        try:
            where = section.location_of(*path[:1])
        except Exception:
            where = section.location
        raise WorkflowError(
            f"{where}: workflows.{'.'.join(path)}: {first['msg']}"
            + (f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else "")
        ) from None
    return settings, Path(section.location.file).parent


def celery_urls(redis_url: str) -> str:
    """A Redis URL as Celery's broker and backend want it (unix sockets: ``redis+socket://``)."""
    if redis_url.startswith("unix://"):
        from urllib.parse import parse_qs, urlparse

        parsed = urlparse(redis_url)
        db = parse_qs(parsed.query).get("db", ["0"])[0]
        return f"redis+socket://{parsed.path}?virtual_host={db}"
    return redis_url


def default_celery_url(settings_url: str) -> str:
    """Celery's database on the settings Redis (persistent: queued jobs survive a restart)."""
    return url_with_db(settings_url, CELERY_DB)


def config_base_dir(config_dir: Path | str | None) -> Path | None:
    return Path(config_dir) if config_dir is not None else None
