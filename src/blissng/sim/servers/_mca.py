"""A simulated MCA: spectra of gaussian lines on a background with Poisson noise."""

from __future__ import annotations

from typing import Any

import numpy as np

from blissng.sim.servers._base import Client, expect_args
from blissng.sim.servers._detector import TriggeredDetector
from blissng.sim.servers._spec import McaSpec


class McaSim(TriggeredDetector):
    kind = "mca"

    def __init__(self, name: str, spec: McaSpec, host: Any) -> None:
        super().__init__(name, spec, host)
        bins = np.arange(spec.nbins, dtype=np.float64)
        shape = np.full(spec.nbins, spec.background)
        for center, width, height in spec.lines:
            shape += height * np.exp(-0.5 * ((bins - center) / width) ** 2)
        self.shape = shape  # counts per second per bin
        self.commands.update(
            {
                "*IDN?": lambda a, c: f"SIMMCA {spec.nbins} 1.0",
                "?NBIN": self.q_nbin,
            }
        )

    def q_nbin(self, args: list[str], client: Client) -> str:
        expect_args(args, 0)
        return str(self.spec.nbins)

    async def acquire_points(self, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        factor = self.scale_factors(self.spec.scale, t0, t1)
        if factor is None:
            # A pool of Poisson draws for this exposure: each point gets one at random.
            # Drawing 1024 Poisson numbers costs ~50 us, too much for 10 kHz spectra.
            pool = self.noise_pool(self.time, self._draw)
            return pool[self.np_rng.integers(0, len(pool), len(t0))]
        scale = factor * (t1 - t0)
        return self.np_rng.poisson(self.shape[None, :] * scale[:, None]).astype("<u4")

    def _draw(self, n: int) -> np.ndarray:
        return self.np_rng.poisson(self.shape * self.time, (n, self.spec.nbins)).astype("<u4")

    def format_read(self, first: int, points: np.ndarray | None) -> bytes:
        n = 0 if points is None else len(points)
        header = f"DATA {n} {self.spec.nbins} u4\n".encode("ascii")
        if points is None:
            return header
        return header + np.ascontiguousarray(points, dtype="<u4").tobytes()
