"""The configuration: a directory of YAML files -> pydantic-validated parameters -> objects.

See docs/configuration.md for the YAML layout and docs/architecture.md for the contract.
"""

from ._base import ConfigModel, Configurable
from ._classes import resolve_class
from ._config import Config, ConfigContext
from ._connecting import CONNECT_TIMEOUT, close_objects, connect_objects, failure_text
from ._errors import ConfigError, Location
from ._registry import CLASSES
from ._tree import ObjectInfo, Section

__all__ = [
    "CLASSES",
    "CONNECT_TIMEOUT",
    "Config",
    "ConfigContext",
    "ConfigError",
    "ConfigModel",
    "Configurable",
    "Location",
    "ObjectInfo",
    "Section",
    "close_objects",
    "connect_objects",
    "failure_text",
    "resolve_class",
]
