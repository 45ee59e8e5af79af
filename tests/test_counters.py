"""Counters: sampling modes, one read per controller, position-dependent simulated counters,
calculation counters, the in-process scaler."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pytest

from blissng.devices import (
    STATS_FIELDS,
    Acquirable,
    AcquisitionParameters,
    CalcCounterController,
    CalcOutputParameters,
    DetectorError,
    DeviceError,
    SamplingCounter,
    SamplingCounterController,
    SamplingMode,
    TriggerMode,
    UnknownDeviceError,
)
from blissng.sim import MockupController, SimCounterController, SimScalerController

pytestmark = pytest.mark.anyio


class RampController(SamplingCounterController):
    """Each sample is the next integer; remembers what it returned (to check reductions)."""

    def __init__(self, modes: dict[str, SamplingMode], **kwargs):
        super().__init__("ramp", **kwargs)
        for name, mode in modes.items():
            self.add_counter(SamplingCounter(name, self, mode=mode, nsamples=5))
        self.samples: list[float] = []
        self.calls = 0

    async def read_all(self, counters: Sequence[SamplingCounter]) -> Sequence[float]:
        self.calls += 1
        value = float(len(self.samples) + 1)
        self.samples.append(value)
        return [value] * len(counters)


def motor(instant: bool = True):
    params = MockupController.Parameters.model_validate(
        {"instant": instant, "axes": [{"name": "m1"}]}
    )
    return MockupController("motors", params).child("m1")


async def test_counter_controller_is_acquirable_and_reads_all_counters_in_one_call():
    ctrl = RampController({f"c{i}": SamplingMode.MEAN for i in range(8)})
    assert isinstance(ctrl, Acquirable)
    values = await ctrl.count(0)
    assert ctrl.calls == 1
    assert list(values) == [f"c{i}" for i in range(8)]
    counter = ctrl.child("c3")
    assert (counter.name, counter.unit, counter.dtype, counter.shape) == ("c3", None, "float64", ())


@pytest.mark.parametrize(
    "mode",
    [SamplingMode.MEAN, SamplingMode.INTEGRATE, SamplingMode.SINGLE, SamplingMode.LAST],
)
async def test_scalar_sampling_modes_reduce_the_samples_taken_during_the_count(mode):
    ctrl = RampController({"c": mode}, sampling_period=0.01)
    count_time = 0.1
    start = time.perf_counter()
    value = (await ctrl.count(count_time))["c"]
    assert time.perf_counter() - start >= count_time
    samples = np.array(ctrl.samples)
    assert len(samples) >= 2  # sampled repeatedly over the count time (more when idle)
    expected = {
        SamplingMode.MEAN: samples.mean(),
        SamplingMode.INTEGRATE: samples.mean() * count_time,
        SamplingMode.SINGLE: samples[0],
        SamplingMode.LAST: samples[-1],
    }[mode]
    assert value == pytest.approx(expected)


async def test_stats_mode_gives_mean_n_std_var_min_max_p2v():
    ctrl = RampController({"c": SamplingMode.STATS}, sampling_period=0.01)
    assert ctrl.child("c").shape == (7,)
    stats = (await ctrl.count(0.05))["c"]
    samples = np.array(ctrl.samples)
    assert dict(zip(STATS_FIELDS, stats, strict=True)) == pytest.approx(
        {
            "mean": samples.mean(),
            "N": len(samples),
            "std": samples.std(),
            "var": samples.var(),
            "min": 1.0,
            "max": float(len(samples)),
            "p2v": len(samples) - 1.0,
        }
    )


async def test_integrate_stats_mode_scales_the_stats_by_the_count_time():
    ctrl = RampController({"c": SamplingMode.INTEGRATE_STATS}, sampling_period=0.01)
    stats = (await ctrl.count(0.05))["c"]
    samples = np.array(ctrl.samples) * 0.05
    assert stats[0] == pytest.approx(samples.mean())
    assert stats[5] == pytest.approx(samples.max())


async def test_samples_mode_returns_nsamples_spread_over_the_count_time():
    ctrl = RampController({"c": SamplingMode.SAMPLES, "m": SamplingMode.MEAN})
    assert ctrl.child("c").shape == (5,)
    values = await ctrl.count(0)  # no count time: still 5 samples, back to back
    assert list(values["c"]) == [1, 2, 3, 4, 5]
    assert values["m"] == 3
    start = time.perf_counter()
    ctrl.samples.clear()
    values = await ctrl.count(0.08)
    assert time.perf_counter() - start >= 0.08
    assert list(values["c"]) == ctrl.samples[:5]


async def test_unknown_sampling_mode_and_counter_are_named():
    ctrl = RampController({"c": SamplingMode.MEAN})
    with pytest.raises(DeviceError, match="x: unknown sampling mode .average. \\(one of MEAN"):
        SamplingCounter("x", ctrl, mode="average")
    with pytest.raises(UnknownDeviceError, match=r"ramp: has no counter 'd' \(its counters: c\)"):
        ctrl.child("d")


async def test_sampling_controller_refuses_hardware_triggering():
    ctrl = RampController({"c": SamplingMode.MEAN})
    params = AcquisitionParameters(0.1, 10, trigger_mode=TriggerMode.HARDWARE)
    with pytest.raises(DetectorError, match="ramp: does not support hardware triggering"):
        await ctrl.prepare(params)


async def test_points_accumulate_until_read():
    ctrl = RampController({"a": SamplingMode.MEAN, "b": SamplingMode.SAMPLES})
    await ctrl.prepare(AcquisitionParameters(0.0, 3))
    await ctrl.start()
    for _ in range(3):
        await ctrl.trigger()
    data = await ctrl.read()
    assert data["a"].shape == (3,) and data["b"].shape == (3, 5)
    assert (await ctrl.read())["a"].shape == (0,)


async def test_simulated_counters_peak_at_their_motor_position():
    m1 = motor()
    params = SimCounterController.Parameters.model_validate(
        {
            "counters": [
                {"name": "peak", "motor": m1, "center": 2.0, "fwhm": 1.0, "height": 100,
                 "background": 5},
                {"name": "flat", "background": 7, "height": 0},
                {"name": "noisy", "motor": m1, "center": 2.0, "height": 100, "noise": 1.0},
            ],
            "seed": 1,
        }
    )  # fmt: skip
    ctrl = SimCounterController("sim", params)
    await m1.move(2.0)
    values = await ctrl.count(0)
    assert values["peak"] == pytest.approx(105)
    assert values["flat"] == 7
    assert values["noisy"] != 100 and abs(values["noisy"] - 100) < 6
    await m1.move(2.5)  # half width at half maximum
    assert (await ctrl.count(0))["peak"] == pytest.approx(55)
    await m1.move(10)
    assert (await ctrl.count(0))["peak"] == pytest.approx(5)


async def test_simulated_counter_needs_a_motor():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="motor must be a motor"):
        SimCounterController.Parameters.model_validate({"counters": [{"name": "c", "motor": "m1"}]})


async def test_calc_counters_derive_from_other_counters():
    m1 = motor()
    sim = SimCounterController(
        "sim",
        SimCounterController.Parameters.model_validate(
            {
                "counters": [
                    {"name": "det", "background": 6, "height": 0},
                    {"name": "mon", "background": 2, "height": 0},
                ]
            }
        ),
    )
    calc = CalcCounterController(
        "norm",
        {"d": sim.child("det"), "m": sim.child("mon")},
        [CalcOutputParameters(name="ratio", expression="d / m"),
         CalcOutputParameters(name="log", expression="log(d)")],
    )  # fmt: skip
    assert calc.depends_on == (sim,)
    assert (await calc.count(0)) == pytest.approx({"ratio": 3.0, "log": math.log(6)})
    # in a scan: the chain reads the inputs' controller, then the calc controller
    params = AcquisitionParameters(0.0, 2)
    await sim.prepare(params)
    await calc.prepare(params)
    assert len((await calc.read())["ratio"]) == 0  # nothing read from the inputs yet
    for _ in range(2):
        await sim.trigger()
        await sim.read()
    assert list((await calc.read())["ratio"]) == [3.0, 3.0]
    await calc.stop()
    del m1


async def test_calc_counter_errors_name_the_controller():
    sim = SimCounterController(
        "sim", SimCounterController.Parameters.model_validate({"counters": [{"name": "det"}]})
    )
    with pytest.raises(DeviceError, match="norm: expression of 'bad' is invalid"):
        CalcCounterController(
            "norm", {"d": sim.child("det")}, [CalcOutputParameters(name="bad", expression="d /")]
        )
    calc = CalcCounterController(
        "norm", {"d": sim.child("det")}, [CalcOutputParameters(name="x", expression="q * 2")]
    )
    with pytest.raises(DeviceError, match="norm: computing 'x' failed: NameError"):
        await calc.count(0)


async def test_in_process_scaler_integrates_over_the_count_time():
    scaler = SimScalerController(
        "scaler",
        SimScalerController.Parameters.model_validate(
            {"counters": [{"name": "mon", "background": 1000, "height": 0}]}
        ),
    )
    start = time.perf_counter()
    value = (await scaler.count(0.05))["mon"]
    assert time.perf_counter() - start >= 0.05
    assert value == pytest.approx(50)
    params = AcquisitionParameters(0.01, 3, frames_per_trigger=2)
    await scaler.prepare(params)
    await scaler.start()
    for _ in range(3):
        await scaler.trigger()
    assert len((await scaler.read())["mon"]) == 6  # frames per trigger
