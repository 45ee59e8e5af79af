"""blissng: beamline control and data acquisition on asyncio and structured concurrency.

The layers, bottom-up, are described in docs/architecture.md; each subpackage imports only
the layers below it.
"""

__version__ = "0.1.0"
