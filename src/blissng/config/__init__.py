"""The configuration: a directory of YAML files -> pydantic-validated parameters -> objects.

See docs/configuration.md for the YAML layout and docs/architecture.md for the contract.
"""

from .base import ConfigModel, Configurable
from .classes import resolve_class
from .config import Config, ConfigContext
from .errors import ConfigError, Location
from .registry import CLASSES
from .tree import ObjectInfo, Section

__all__ = [
    "CLASSES",
    "Config",
    "ConfigContext",
    "ConfigError",
    "ConfigModel",
    "Configurable",
    "Location",
    "ObjectInfo",
    "Section",
    "resolve_class",
]
