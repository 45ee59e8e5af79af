"""A simulated MCA: spectra of gaussian lines on a background with Poisson noise."""

from __future__ import annotations

from typing import Any

import numpy as np

from blissng.sim.servers.base import Client, expect_args
from blissng.sim.servers.detector import TriggeredDetector
from blissng.sim.servers.peaks import peak_rate
from blissng.sim.servers.spec import McaSpec


class McaSim(TriggeredDetector):
    kind = "mca"

    def __init__(self, name: str, spec: McaSpec, host: Any) -> None:
        super().__init__(name, spec, host)
        bins = np.arange(spec.nbins, dtype=np.float64)
        shape = np.full(spec.nbins, spec.background)
        for center, width, height in spec.lines:
            shape += height * np.exp(-0.5 * ((bins - center) / width) ** 2)
        self.shape = shape  # counts per second per bin
        self.np_rng = np.random.default_rng(None if host.spec.seed is None else host.spec.seed)
        self.commands.update(
            {
                "*IDN?": lambda a, c: f"SIMMCA {spec.nbins} 1.0",
                "?NBIN": self.q_nbin,
            }
        )

    def q_nbin(self, args: list[str], client: Client) -> str:
        expect_args(args, 0)
        return str(self.spec.nbins)

    async def acquire_point(self, t0: float, t1: float) -> None:
        factor = 1.0
        if self.spec.scale is not None and self.spec.motors:
            motors = self.host.simulator_named(self.spec.motors)
            positions = motors.real_positions(0.5 * (t0 + t1)) if motors else {}
            factor = peak_rate(self.spec.scale, positions) / max(
                self.spec.scale.height + self.spec.scale.background, 1e-12
            )
        spectrum = self.np_rng.poisson(self.shape * factor * (t1 - t0)).astype("<u4")
        self.points.append(spectrum)

    def format_read(self, points: list[Any]) -> bytes:
        header = f"DATA {len(points)} {self.spec.nbins} u4\n".encode("ascii")
        if not points:
            return header
        return header + np.stack(points).astype("<u4").tobytes()
