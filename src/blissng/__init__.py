"""blissng: beamline control and data acquisition on asyncio and structured concurrency.

The layers, bottom-up, are described in docs/architecture.md; each subpackage imports only
the layers below it. The root of every error (:class:`BlissngError`) and the exception a
stopped command ends with (:class:`Aborted`) are here (docs/errors.md).
"""

from .errors import Aborted, BlissngError

__version__ = "0.1.0"

__all__ = ["Aborted", "BlissngError", "__version__"]
