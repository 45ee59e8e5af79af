"""A simulated camera that saves its frames to HDF5 files and reports references
``(file, dataset, index)``: pixels never travel through the control system."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blissng.sim.servers._base import Client, SimError, expect_args
from blissng.sim.servers._detector import TriggeredDetector
from blissng.sim.servers._spec import CameraSpec
from blissng.threads import run_in_thread

if TYPE_CHECKING:
    import h5py

DATASET = "/entry/data/data"


class CameraSim(TriggeredDetector):
    kind = "camera"

    def __init__(self, name: str, spec: CameraSpec, host: Any) -> None:
        super().__init__(name, spec, host)
        y, x = np.mgrid[0 : spec.height, 0 : spec.width]
        sx, sy, sigma, height = spec.spot
        self.image = spec.background + height * np.exp(
            -0.5 * (((x - sx) / sigma) ** 2 + ((y - sy) / sigma) ** 2)
        )
        self.directory = host.directory / "camera"
        self.prefix = name
        self.file: Path | None = None
        self._h5: h5py.File | None = None
        self.commands.update(
            {
                "*IDN?": lambda a, c: f"SIMCAM {spec.width} {spec.height} 1.0",
                "?SIZE": lambda a, c: f"{spec.width} {spec.height}",
                "SAVE": self.c_save,
                "?FILE": lambda a, c: str(self.file) if self.file else "",
            }
        )

    def reset(self) -> None:
        super().reset()
        self.directory = self.host.directory / "camera"
        self.prefix = self.name
        self.file = None

    def c_save(self, args: list[str], client: Client) -> str:
        expect_args(args, 2)
        if self.status != "IDLE":
            raise SimError(10, f"cannot change the saving while {self.status}")
        self.directory = Path(args[0])
        self.prefix = args[1]
        return "OK"

    def _open_file(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        number = 1
        while (self.directory / f"{self.prefix}_{number:04d}.h5").exists():
            number += 1
        path = self.directory / f"{self.prefix}_{number:04d}.h5"
        shape = (self.npoints, self.spec.height, self.spec.width)
        import h5py  # only when a camera saves frames: the demo's start-up does not pay for it

        h5 = h5py.File(path, "w", libver="latest")
        h5.create_dataset(
            DATASET,
            shape=(0, self.spec.height, self.spec.width),
            maxshape=(None if self.npoints == 0 else shape[0], *shape[1:]),
            chunks=(1, *shape[1:]),
            dtype="<u2",
        )
        h5.swmr_mode = True
        self._h5 = h5
        return path

    async def acquisition_started(self) -> None:
        try:
            self.file = await run_in_thread(self._open_file)
        except OSError as exc:
            raise SimError(10, f"cannot create a file in {self.directory}: {exc}") from exc

    def _write(self, frames: np.ndarray) -> None:
        assert self._h5 is not None
        dataset = self._h5[DATASET]
        n = dataset.shape[0]
        dataset.resize(n + len(frames), axis=0)
        dataset[n:] = frames
        dataset.flush()

    def _draw(self, n: int) -> np.ndarray:
        expected = self.image * self.time
        return np.minimum(self.np_rng.poisson(expected, (n, *expected.shape)), 65535).astype("<u2")

    async def acquire_points(self, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        """Frames written to the file (in a worker thread) before they count: references
        are only handed out for frames a reader can open."""
        factor = self.scale_factors(self.spec.scale, t0, t1)
        if factor is None:
            pool = self.noise_pool(self.time, self._draw)
            frames = pool[self.np_rng.integers(0, len(pool), len(t0))]
        else:
            expected = self.image[None, :, :] * (factor * (t1 - t0))[:, None, None]
            frames = np.minimum(self.np_rng.poisson(expected), 65535).astype("<u2")
        await run_in_thread(self._write, frames)
        first = self.acquired
        return np.arange(first, first + len(t0))

    def _close(self) -> None:
        h5, self._h5 = self._h5, None
        if h5 is not None:
            h5.close()

    async def acquisition_ended(self) -> None:
        await run_in_thread(self._close)

    def format_read(self, first: int, points: np.ndarray | None) -> str:
        n = 0 if points is None else len(points)
        return f"{n} {first} {DATASET} {os.fspath(self.file) if self.file else ''}"
