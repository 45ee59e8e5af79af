"""Ewoks tasks blissng ships: read a scan's channels through the reader API, fit a peak.

They run in worker processes (local or Celery), never on the session's event loop, so they
use the async reader with ``anyio.run`` of their own. A Celery worker on another machine needs
a data Redis URL it can reach (a TCP URL, not the session's unix socket).

Inputs a scan trigger gives (see blissng.workflows._triggers): ``scan`` (the scan's key
``blissng:scan:<id>`` or its id) and ``redis_url`` (the data Redis).
"""

from __future__ import annotations

from typing import Any

import anyio
from ewokscore import Task

from ._fitting import fit_gaussian

SCAN_KEY_PREFIX = "blissng:scan:"
FINAL_STATES = ("stopped", "closed")


def scan_id_of(scan: str) -> str:
    """``blissng:scan:<id>`` or ``<id>`` -> ``<id>``."""
    return scan[len(SCAN_KEY_PREFIX) :] if scan.startswith(SCAN_KEY_PREFIX) else scan


async def load_scan_channels(
    redis_url: str,
    scan: str,
    channels: list[str] | None = None,
    wait_timeout: float | None = 60.0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``({channel: array}, scan document)`` of a scan, once it has closed (all its data
    published). ``wait_timeout`` 0: read what is there now."""
    from blissng.data import DataStore

    async with DataStore(redis_url) as store:
        view = await store.get_scan(scan_id_of(scan))
        if wait_timeout is None or wait_timeout > 0:
            await view.wait_state("closed", timeout=wait_timeout)
        names = list(channels) if channels else list(view.channels)
        unknown = [name for name in names if name not in view.channels]
        if unknown:
            raise KeyError(
                f"scan {view.id} has no channel {', '.join(unknown)}; "
                f"it has {', '.join(view.channels)}"
            )
        data = {name: await view.channels[name].get(0) for name in names}
        return data, dict(view.info)


def channel_name(data: dict[str, Any], name: str) -> str:
    """``name`` itself, or the one channel whose short name it is (``diode`` for
    ``simct:diode``, ``m1`` for ``axis:m1``)."""
    if name in data:
        return name
    matches = [full for full in data if full.rsplit(":", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise KeyError(f"channel {name!r} is ambiguous: {', '.join(matches)}")
    raise KeyError(f"no channel {name!r} to fit; there are {', '.join(data)}")


class LoadScanChannels(  # type: ignore[call-arg]
    Task,
    input_names=["scan", "redis_url"],
    optional_input_names=["channels", "wait_timeout"],
    output_names=["data", "scan_info"],
):
    """Outputs ``data`` (``{channel name: numpy array}``) and ``scan_info`` (its document)."""

    def run(self) -> None:
        channels = self.get_input_value("channels", None)
        wait_timeout = self.get_input_value("wait_timeout", 60.0)
        data, info = anyio.run(
            load_scan_channels,
            self.inputs.redis_url,
            self.inputs.scan,
            channels,
            wait_timeout,
        )
        self.outputs.data = data
        self.outputs.scan_info = info


class FitGaussianPeak(  # type: ignore[call-arg]
    Task,
    input_names=["data", "x", "y"],
    output_names=["position", "fwhm", "sigma", "height", "background", "fit"],
):
    """Fit a gaussian to ``data[y]`` against ``data[x]``; ``height`` is above the background,
    ``fwhm`` is the width (``sigma`` too)."""

    def run(self) -> None:
        data = self.inputs.data
        x = data[channel_name(data, self.inputs.x)]
        y = data[channel_name(data, self.inputs.y)]
        fit = fit_gaussian(x, y)
        self.outputs.position = fit.position
        self.outputs.fwhm = fit.fwhm
        self.outputs.sigma = fit.sigma
        self.outputs.height = fit.height
        self.outputs.background = fit.background
        self.outputs.fit = fit.to_dict()
