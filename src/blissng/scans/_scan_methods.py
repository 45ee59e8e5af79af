"""What every scan object offers, the live ``Scan`` and a ``StoredScan`` read back from Redis
alike: its ``__info__`` text, and the alignment helpers as methods (``scan.peak()``,
``scan.com()``, ``scan.cen()``, ``scan.fwhm()``)."""

from __future__ import annotations

from typing import Any

from ._bridge import command
from ._fit import cen_of, com_of, peak_of, scan_xy


class ScanMethods:
    """Mixed into scan classes that have ``number``, ``title``, ``state``, ``error``, ``path``,
    ``channels``, ``get_data()`` and ``describe()``."""

    number: int | None
    title: str
    state: str
    error: str | None
    path: str | None

    @property
    def channels(self) -> list[str]:
        raise NotImplementedError

    def __info__(self) -> str:
        lines = [f"Scan {self.number}: {self.title}", f"  state: {self.state}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.path:
            lines.append(f"  file: {self.path} (entry {self.number}.1)")
        lines.append(f"  channels: {', '.join(self.channels)}")
        return "\n".join(lines)

    async def _fit(self, kind: str, counter: Any = None, axis: Any = None) -> Any:
        _, x, y = await scan_xy(self, counter, axis)  # type: ignore[arg-type]
        fits = {"peak": peak_of, "com": com_of, "cen": cen_of}
        return fits[kind](x, y)

    @command
    async def peak(self, counter: Any = None, axis: Any = None) -> float:
        """Motor position of ``counter``'s maximum in this scan."""
        return await self._fit("peak", counter, axis)

    @command
    async def com(self, counter: Any = None, axis: Any = None) -> float:
        """Centre of mass of ``counter`` (above its minimum) in this scan."""
        return await self._fit("com", counter, axis)

    @command
    async def cen(self, counter: Any = None, axis: Any = None) -> tuple[float, float]:
        """``(centre, fwhm)`` of ``counter``'s peak in this scan."""
        return await self._fit("cen", counter, axis)

    @command
    async def fwhm(self, counter: Any = None, axis: Any = None) -> float:
        """Full width at half maximum of ``counter``'s peak in this scan."""
        return (await self._fit("cen", counter, axis))[1]
