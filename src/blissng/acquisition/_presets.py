"""Chain presets: user hooks around the chain's phases (open a shutter, check the beam).

Subclass :class:`ChainPreset` and override what you need; the chain calls only the methods
that are overridden, so an unused per-iteration hook costs nothing per point. Order: presets
run in the order given, ``before_*`` ones before the phase, ``after_*`` after it. ``before_stop``
/ ``after_stop`` run also after an error or an abort (in the shielded cleanup).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._chain import AcquisitionChain

PRESET_PHASES = (
    "before_prepare",
    "after_prepare",
    "before_start",
    "after_start",
    "before_iteration",
    "after_iteration",
    "before_stop",
    "after_stop",
)


class ChainPreset:
    """Hooks around the chain's phases; every method is an optional no-op."""

    name: str = ""

    async def before_prepare(self, chain: AcquisitionChain) -> None: ...

    async def after_prepare(self, chain: AcquisitionChain) -> None: ...

    async def before_start(self, chain: AcquisitionChain) -> None: ...

    async def after_start(self, chain: AcquisitionChain) -> None: ...

    async def before_iteration(self, chain: AcquisitionChain, index: int) -> None:
        """Before point ``index`` (also before a repeated point)."""

    async def after_iteration(self, chain: AcquisitionChain, index: int) -> None:
        """After point ``index`` has been committed to the channels."""

    async def before_stop(self, chain: AcquisitionChain) -> None: ...

    async def after_stop(self, chain: AcquisitionChain) -> None: ...

    def overrides(self, phase: str) -> bool:
        """Whether this preset does something at ``phase``."""
        return getattr(type(self), phase) is not getattr(ChainPreset, phase)

    @property
    def label(self) -> str:
        return self.name or type(self).__name__
