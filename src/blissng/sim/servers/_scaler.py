"""A simulated scaler / counter box: a 1 MHz timer, constant-rate monitors and detectors whose
rate is a gaussian peak over the motor controller's positions."""

from __future__ import annotations

from typing import Any

import numpy as np

from blissng.sim.servers._base import Client, expect_args, now
from blissng.sim.servers._detector import TriggeredDetector
from blissng.sim.servers._peaks import noisy, peak_rate, peak_rates
from blissng.sim.servers._spec import PeakSpec, ScalerChannelSpec, ScalerSpec

SAMPLES = 11  # instants per point at which the rates are integrated


class ScalerSim(TriggeredDetector):
    kind = "scaler"

    def __init__(self, name: str, spec: ScalerSpec, host: Any) -> None:
        super().__init__(name, spec, host)
        self.channels: list[ScalerChannelSpec] = []
        self.reset()
        self.commands.update(
            {
                "*IDN?": lambda a, c: f"SIMSCALER {len(self.channels)} 1.0",
                "?CHAN": lambda a, c: " ".join(ch.name for ch in self.channels),
                "?RATE": self.q_rate,
            }
        )

    def reset(self) -> None:
        super().reset()
        self.channels = [ch.model_copy(deep=True) for ch in self.spec.channels]

    def _positions(self, t: float) -> dict[int, float]:
        motors = self.host.simulator_named(self.spec.motors) if self.spec.motors else None
        return motors.real_positions(t) if motors is not None else {}

    def _rate(self, channel: ScalerChannelSpec, t: float) -> float:
        if channel.source == "clock":
            return 1e6
        if channel.source == "constant":
            return channel.rate
        assert channel.peak is not None
        return peak_rate(channel.peak, self._positions(t))

    def q_rate(self, args: list[str], client: Client) -> str:
        expect_args(args, 0)
        t = now()
        return " ".join(
            f"{max(noisy(self._rate(ch, t), ch.noise, self.rng), 0.0):.6g}" for ch in self.channels
        )

    async def acquire_points(self, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        """Counts of every channel for each point: rates integrated over [t0, t1] (samples
        along the motion when a peak channel depends on moving motors), with noise."""
        duration = t1 - t0
        samples = t0[:, None] + duration[:, None] * np.linspace(0.0, 1.0, SAMPLES)[None, :]
        positions = self._positions_at(samples)
        counts = np.empty((len(t0), len(self.channels)), dtype=np.int64)
        for j, ch in enumerate(self.channels):
            if ch.source == "clock":
                value = duration * 1e6
            elif ch.source == "constant":
                value = ch.rate * duration
            else:
                assert ch.peak is not None
                rates = peak_rates(ch.peak, positions)
                mean = (rates.sum(axis=1) - 0.5 * (rates[:, 0] + rates[:, -1])) / (SAMPLES - 1)
                value = mean * duration  # the trapezoid rule over the samples
            if ch.noise:
                value = value * (1.0 + ch.noise * self.np_rng.standard_normal(len(t0)))
            counts[:, j] = np.maximum(np.rint(value), 0)
        return counts

    def _positions_at(self, times: np.ndarray) -> dict[int, np.ndarray]:
        motors = self.host.simulator_named(self.spec.motors) if self.spec.motors else None
        axes = {a for ch in self.channels if ch.peak is not None for a in ch.peak.axes}
        if motors is None or not axes:
            return {}
        return motors.real_positions_at(times, sorted(axes))

    def format_read(self, first: int, points: np.ndarray | None) -> str:
        if points is None:
            return "0"
        return " ".join([str(len(points)), *map(str, points.ravel().tolist())])

    def control_configure_channel(self, channel: str, **fields: Any) -> dict[str, Any]:
        for ch in self.channels:
            if ch.name == channel:
                break
        else:
            names = [c.name for c in self.channels]
            raise ValueError(f"{self.name}: unknown channel {channel!r}; channels are {names}")
        peak = ch.peak.model_dump() if ch.peak else PeakSpec().model_dump()
        if "axes" in fields:
            peak["axes"] = {int(k): tuple(v) for k, v in fields.pop("axes").items()}
        first = next(iter(peak["axes"]))
        center, width = peak["axes"][first]
        if "center" in fields:
            center = float(fields.pop("center"))
        if "width" in fields:
            width = float(fields.pop("width"))
        peak["axes"][first] = (center, width)
        for key in ("height", "background"):
            if key in fields:
                peak[key] = float(fields.pop(key))
        if "noise" in fields:
            ch.noise = peak["noise"] = float(fields.pop("noise"))
        if "rate" in fields:
            ch.rate = float(fields.pop("rate"))
        if fields:
            raise ValueError(f"{self.name}: unknown channel fields {sorted(fields)}")
        if ch.source == "peak":
            ch.peak = PeakSpec.model_validate(peak)
        return ch.model_dump()
