"""A simulated scaler / counter box: a 1 MHz timer, constant-rate monitors and detectors whose
rate is a gaussian peak over the motor controller's positions."""

from __future__ import annotations

import functools
from typing import Any

from blissng.sim.servers.base import Client, expect_args, now
from blissng.sim.servers.detector import TriggeredDetector
from blissng.sim.servers.peaks import integrate, noisy, peak_rate
from blissng.sim.servers.spec import PeakSpec, ScalerChannelSpec, ScalerSpec


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

    async def acquire_point(self, t0: float, t1: float) -> None:
        counts = []
        for ch in self.channels:
            if ch.source == "clock":
                value = (t1 - t0) * 1e6
            elif ch.source == "constant":
                value = ch.rate * (t1 - t0)
            else:
                value = integrate(functools.partial(self._rate, ch), t0, t1)
            counts.append(max(round(noisy(value, ch.noise, self.rng)), 0))
        self.points.append(counts)

    def format_read(self, points: list[Any]) -> str:
        return " ".join([str(len(points)), *(str(v) for point in points for v in point)])

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
