"""The acquisition chain with small in-test devices that implement the device protocols.

These devices are real (if trivial) implementations of Acquirable / Movable / TriggerSource:
they record what the chain asks of them in a shared journal, so the tests can check the order
of the lifecycle, the points, the cleanup.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping

import anyio
import anyio.lowlevel
import numpy as np
import pytest

from blissng.acquisition import (
    AcquirableSlave,
    AcquisitionChain,
    AcquisitionError,
    ChainConfigurationError,
    ChainPreset,
    HardwareTriggerMaster,
    MotorStepMaster,
    PauseCondition,
    ScanControl,
    ScanState,
    SoftwareTimerMaster,
    TriggerType,
)
from blissng.devices import Acquirable, AcquisitionParameters, Movable, TriggerMode, TriggerSource
from blissng.errors import Aborted
from blissng.testing import subscribe

pytestmark = pytest.mark.anyio


class Counter:
    unit: str | None

    def __init__(self, name: str, dtype: str = "float64", shape: tuple[int, ...] = ()) -> None:
        self.name = name
        self.unit = "cts"
        self.dtype = dtype
        self.shape = shape


class CounterController:
    """Software-triggered counters: each trigger makes one point whose values are
    ``index * 10 + counter number``; ``fail_in`` makes a phase raise."""

    def __init__(
        self, name: str, journal: list[str], ncounters: int = 2, fail_in: str | None = None
    ) -> None:
        self.name = name
        self.journal = journal
        self._counters = [Counter(f"c{i}") for i in range(ncounters)]
        self.fail_in = fail_in
        self.params: AcquisitionParameters | None = None
        self.triggers = 0
        self.trigger_hook: anyio.Event | None = None  # set when triggered
        self._ready: list[int] = []

    @property
    def counters(self) -> list[Counter]:
        return self._counters

    def _log(self, phase: str) -> None:
        self.journal.append(f"{self.name}.{phase}")
        if self.fail_in == phase:
            raise OSError(f"{self.name} lost its connection")

    async def prepare(self, params: AcquisitionParameters) -> None:
        self.params = params
        self._log("prepare")

    async def start(self) -> None:
        self._log("start")

    async def trigger(self) -> None:
        self._log("trigger")
        self._ready.append(self.triggers)
        self.triggers += 1
        if self.trigger_hook is not None:
            self.trigger_hook.set()

    async def read(self) -> Mapping[str, np.ndarray]:
        self._log("read")
        ready, self._ready = self._ready, []
        return {
            c.name: np.array([k * 10 + i for k in ready], dtype=float)
            for i, c in enumerate(self.counters)
        }

    async def wait_ready(self) -> None:
        self._log("wait_ready")

    async def stop(self) -> None:
        self._log("stop")


class Motor:
    def __init__(self, name: str, journal: list[str], fail_at: float | None = None) -> None:
        self.name = name
        self.unit = "mm"
        self.journal = journal
        self.position = 0.0
        self.fail_at = fail_at
        self.stopped = 0

    async def read_position(self) -> float:
        return self.position

    async def move(self, target: float, wait: bool = True) -> None:
        self.journal.append(f"{self.name}.move({target:g})")
        if self.fail_at is not None and math.isclose(target, self.fail_at):
            raise RuntimeError(f"{self.name} hit its limit switch")
        self.position = target

    async def wait_move(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped += 1
        self.journal.append(f"{self.name}.stop")


class ClockedTriggerBox:
    """A trigger box whose pulses are a clock: pulse k happens at start + k * period."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.name = name
        self.journal = journal
        self.npoints = 0
        self.period = 0.0
        self.started_at: float | None = None

    def pulses_so_far(self) -> int:
        if self.started_at is None:
            return 0
        return min(self.npoints, int((time.monotonic() - self.started_at) / self.period) + 1)

    async def prepare_pulses(self, npoints: int, period: float, width: float) -> None:
        self.journal.append(f"{self.name}.prepare_pulses({npoints})")
        self.npoints, self.period = npoints, period

    async def start_pulses(self) -> None:
        self.journal.append(f"{self.name}.start_pulses")
        self.started_at = time.monotonic()

    async def wait_done(self) -> None:
        assert self.started_at is not None
        await anyio.sleep(max(0.0, self.started_at + self.npoints * self.period - time.monotonic()))
        self.journal.append(f"{self.name}.done")

    async def stop(self) -> None:
        self.journal.append(f"{self.name}.stop")


class HardwareDetector:
    """Counts the box's pulses: read() returns the frames since the last read (1D spectra)."""

    def __init__(
        self, name: str, box: ClockedTriggerBox, journal: list[str], miss_after: int = 0
    ) -> None:
        self.name = name
        self.box = box
        self.journal = journal
        self._counters = [Counter("spectrum", "uint32", (4,))]
        self.armed = False
        self.delivered = 0
        self.miss_after = miss_after  # > 0: stops delivering after that many frames

    @property
    def counters(self) -> list[Counter]:
        return self._counters

    async def prepare(self, params: AcquisitionParameters) -> None:
        assert params.trigger_mode is TriggerMode.HARDWARE
        self.journal.append(f"{self.name}.prepare")

    async def start(self) -> None:
        assert self.box.started_at is None, "armed after the pulses started"
        self.armed = True
        self.journal.append(f"{self.name}.start")

    async def trigger(self) -> None:
        raise AssertionError("a hardware-triggered detector is never software-triggered")

    async def read(self) -> Mapping[str, np.ndarray]:
        available = self.box.pulses_so_far()
        if self.miss_after:
            available = min(available, self.miss_after)
        frames = np.array(
            [[k, k, k, k] for k in range(self.delivered, available)], dtype="uint32"
        ).reshape(-1, 4)
        self.delivered = available
        return {"spectrum": frames}

    async def wait_ready(self) -> None:
        pass

    async def stop(self) -> None:
        self.journal.append(f"{self.name}.stop")


def step_chain(
    journal: list[str], npoints: int = 3, count_time: float = 0.0, **slave_kwargs: object
) -> tuple[AcquisitionChain, Motor, CounterController]:
    motor = Motor("m1", journal)
    ctrl = CounterController("diode_ctrl", journal)
    chain = AcquisitionChain()
    master = MotorStepMaster([(motor, np.arange(npoints, dtype=float))])
    timer = SoftwareTimerMaster(count_time, npoints)
    chain.add(master, timer)
    chain.add(timer, AcquirableSlave(ctrl, **slave_kwargs))  # type: ignore[arg-type]
    return chain, motor, ctrl


def test_devices_satisfy_the_protocols() -> None:
    journal: list[str] = []
    box = ClockedTriggerBox("box", journal)
    assert isinstance(CounterController("c", journal), Acquirable)
    assert isinstance(HardwareDetector("d", box, journal), Acquirable)
    assert isinstance(Motor("m", journal), Movable)
    assert isinstance(box, TriggerSource)


async def test_step_scan_lifecycle_order_and_data() -> None:
    journal: list[str] = []
    chain, _motor, ctrl = step_chain(journal, npoints=3)
    sink = subscribe(chain)
    points: list[tuple[int, dict]] = []
    control = ScanControl()
    control.add_point_callback(lambda i, values: points.append((i, dict(values))))

    result = await chain.run(control)

    assert result is control and control.state is ScanState.DONE
    assert control.point_index == 3
    # prepared and started once (deepest first), triggered and read per point, stopped once
    assert journal == [
        "diode_ctrl.prepare",
        "diode_ctrl.start",
        *[
            entry
            for k in range(3)
            for entry in (
                f"m1.move({k})",
                "diode_ctrl.trigger",
                "diode_ctrl.read",
                "diode_ctrl.wait_ready",
            )
        ],
        "m1.stop",
        "diode_ctrl.stop",
    ]
    assert ctrl.params == AcquisitionParameters(count_time=0.0, npoints=3)
    assert sorted(sink.batches) == [
        "axis:m1",
        "diode_ctrl:c0",
        "diode_ctrl:c1",
        "timer:elapsed_time",
        "timer:epoch",
    ]
    assert sink.values("axis:m1").tolist() == [0.0, 1.0, 2.0]
    assert sink.values("diode_ctrl:c1").tolist() == [1.0, 11.0, 21.0]
    assert sink.indices("diode_ctrl:c0") == [0, 1, 2]
    assert sink.ended == {name: 3 for name in sink.batches}
    assert [i for i, _ in points] == [0, 1, 2]
    assert points[2][1]["axis:m1"] == 2.0 and points[2][1]["diode_ctrl:c0"][0] == 20.0
    spec = next(c.spec for c in chain.channels if c.name == "diode_ctrl:c0")
    assert (spec.device, spec.unit, spec.dtype) == ("diode_ctrl", "cts", "float64")


async def test_prepare_once_and_start_once_false_repeat_per_point() -> None:
    journal: list[str] = []
    chain, _, _ = step_chain(journal, npoints=3, prepare_once=False, start_once=False)
    await chain.run()
    assert journal.count("diode_ctrl.prepare") == 3
    assert journal.count("diode_ctrl.start") == 3
    # each point's prepare and start come before its trigger
    first_trigger = journal.index("diode_ctrl.trigger")
    assert journal[first_trigger - 3 : first_trigger] == [
        "diode_ctrl.prepare",
        "diode_ctrl.start",
        "m1.move(0)",
    ]
    second = journal.index("m1.move(1)")
    assert journal[second - 2 : second] == ["diode_ctrl.prepare", "diode_ctrl.start"]


async def test_start_goes_from_the_deepest_level_up() -> None:
    journal: list[str] = []

    class LoggingTimer(SoftwareTimerMaster):
        async def prepare(self) -> None:
            journal.append("timer.prepare")

        async def start(self) -> None:
            journal.append("timer.start")
            await super().start()

    chain = AcquisitionChain()
    timer = LoggingTimer(0.0, 2)
    chain.add(timer, AcquirableSlave(CounterController("a", journal)))
    chain.add(timer, AcquirableSlave(CounterController("b", journal)))
    await chain.run()
    starts = [e for e in journal if e.endswith(".start")]
    assert set(starts[:2]) == {"a.start", "b.start"} and starts[2] == "timer.start"
    prepares = [e for e in journal if e.endswith(".prepare")]
    assert prepares[-1] == "timer.prepare"


async def test_several_slaves_of_one_master_are_triggered_concurrently() -> None:
    """Each controller's trigger waits until the other one has been triggered: this only
    completes if the timer fans out to both at once."""
    journal: list[str] = []
    a = CounterController("a", journal)
    b = CounterController("b", journal)
    a.trigger_hook, b.trigger_hook = anyio.Event(), anyio.Event()

    class Waiting(CounterController):
        pass

    async def trigger_a() -> None:
        await CounterController.trigger(a)
        assert b.trigger_hook is not None
        await b.trigger_hook.wait()

    async def trigger_b() -> None:
        await CounterController.trigger(b)
        assert a.trigger_hook is not None
        await a.trigger_hook.wait()

    a.trigger = trigger_a  # type: ignore[method-assign]
    b.trigger = trigger_b  # type: ignore[method-assign]
    chain = AcquisitionChain()
    timer = SoftwareTimerMaster(0.0, 1)
    chain.add(timer, AcquirableSlave(a))
    chain.add(timer, AcquirableSlave(b))
    sink = subscribe(chain)
    with anyio.fail_after(5):
        await chain.run()
    assert sink.values("a:c0").tolist() == [0.0] and sink.values("b:c1").tolist() == [1.0]


async def test_multi_axis_step_master_moves_axes_together() -> None:
    journal: list[str] = []
    m1, m2 = Motor("m1", journal), Motor("m2", journal)
    master = MotorStepMaster([(m1, [0, 1, 2]), (m2, [10, 20, 30])])
    chain = AcquisitionChain()
    chain.add(master, AcquirableSlave(CounterController("ctrl", journal), count_time=0.0))
    sink = subscribe(chain)
    await chain.run()
    assert sink.values("axis:m1").tolist() == [0, 1, 2]
    assert sink.values("axis:m2").tolist() == [10, 20, 30]
    assert journal[2:4] == ["m1.move(0)", "m2.move(10)"]
    assert m1.stopped == m2.stopped == 1


async def test_bad_chains_are_refused_with_clear_errors() -> None:
    journal: list[str] = []
    with pytest.raises(ValueError, match="differ in length.*m1: 2, m2: 3"):
        MotorStepMaster([(Motor("m1", journal), [0, 1]), (Motor("m2", journal), [0, 1, 2])])
    slave = AcquirableSlave(CounterController("ctrl", journal))
    other = AcquirableSlave(CounterController("other", journal))
    chain = AcquisitionChain()
    with pytest.raises(ChainConfigurationError, match="ctrl is a slave"):
        chain.add(slave, other)  # type: ignore[arg-type]
    timer = SoftwareTimerMaster(0.1, 1)
    chain.add(timer, slave)
    with pytest.raises(ChainConfigurationError, match="already in the chain"):
        chain.add(timer, slave)
    with pytest.raises(ValueError, match="has no counter nope"):
        AcquirableSlave(CounterController("ctrl", journal), counters=["nope"])
    with pytest.raises(ChainConfigurationError, match="empty"):
        await AcquisitionChain().run()


async def test_presets_run_in_order_around_the_phases() -> None:
    journal: list[str] = []

    class Shutter(ChainPreset):
        def __init__(self, name: str) -> None:
            self.name = name

        async def before_prepare(self, chain: AcquisitionChain) -> None:
            journal.append(f"{self.name}.before_prepare")

        async def after_prepare(self, chain: AcquisitionChain) -> None:
            journal.append(f"{self.name}.after_prepare")

        async def before_start(self, chain: AcquisitionChain) -> None:
            journal.append(f"{self.name}.before_start")

        async def after_start(self, chain: AcquisitionChain) -> None:
            journal.append(f"{self.name}.after_start")

        async def before_iteration(self, chain: AcquisitionChain, index: int) -> None:
            journal.append(f"{self.name}.before_iteration({index})")

        async def after_iteration(self, chain: AcquisitionChain, index: int) -> None:
            journal.append(f"{self.name}.after_iteration({index})")

        async def before_stop(self, chain: AcquisitionChain) -> None:
            journal.append(f"{self.name}.before_stop")

        async def after_stop(self, chain: AcquisitionChain) -> None:
            journal.append(f"{self.name}.after_stop")

    chain, _, _ = step_chain(journal, npoints=2)
    chain.add_preset(Shutter("p1"))
    chain.add_preset(Shutter("p2"))
    await chain.run()
    assert journal == [
        "p1.before_prepare",
        "p2.before_prepare",
        "diode_ctrl.prepare",
        "p1.after_prepare",
        "p2.after_prepare",
        "p1.before_start",
        "p2.before_start",
        "diode_ctrl.start",
        "p1.after_start",
        "p2.after_start",
        *[
            entry
            for k in range(2)
            for entry in (
                f"p1.before_iteration({k})",
                f"p2.before_iteration({k})",
                f"m1.move({k})",
                "diode_ctrl.trigger",
                "diode_ctrl.read",
                "diode_ctrl.wait_ready",
                f"p1.after_iteration({k})",
                f"p2.after_iteration({k})",
            )
        ],
        "p1.before_stop",
        "p2.before_stop",
        "m1.stop",
        "diode_ctrl.stop",
        "p1.after_stop",
        "p2.after_stop",
    ]


async def test_a_failing_preset_names_itself() -> None:
    journal: list[str] = []

    class BeamCheck(ChainPreset):
        name = "beam_check"

        async def before_iteration(self, chain: AcquisitionChain, index: int) -> None:
            if index == 1:
                raise RuntimeError("no beam")

    chain, _, _ = step_chain(journal, npoints=3)
    chain.add_preset(BeamCheck())
    with pytest.raises(AcquisitionError, match="beam_check failed in preset before_iteration"):
        await chain.run()
    assert "diode_ctrl.stop" in journal and "m1.stop" in journal


@pytest.mark.parametrize("phase", ["prepare", "start", "trigger", "read", "wait_ready"])
async def test_a_slave_error_aborts_naming_device_and_phase(phase: str) -> None:
    journal: list[str] = []
    motor = Motor("m1", journal)
    good = CounterController("good_ctrl", journal)
    bad = CounterController("diode_ctrl", journal, fail_in=phase)
    chain = AcquisitionChain()
    master = MotorStepMaster([(motor, [0, 1, 2])])
    timer = SoftwareTimerMaster(0.0, 3)
    chain.add(master, timer)
    chain.add(timer, AcquirableSlave(good))
    chain.add(timer, AcquirableSlave(bad))
    sink = subscribe(chain)
    control = ScanControl()
    with pytest.raises(AcquisitionError) as info:
        await chain.run(control)
    error = info.value
    assert str(error) == f"diode_ctrl failed in {phase}: OSError: diode_ctrl lost its connection"
    assert (error.device, error.phase) == ("diode_ctrl", phase)
    assert isinstance(error.__cause__, OSError)
    assert control.state is ScanState.FAILED
    # stop is called on every node, and every channel is sealed
    assert {"m1.stop", "good_ctrl.stop", "diode_ctrl.stop"} <= set(journal)
    assert set(sink.ended) == {c.name for c in chain.channels}


async def test_a_motor_error_names_the_axis() -> None:
    journal: list[str] = []
    motor = Motor("m1", journal, fail_at=1.0)
    chain = AcquisitionChain()
    master = MotorStepMaster([(motor, [0, 1, 2])])
    chain.add(master, AcquirableSlave(CounterController("ctrl", journal), count_time=0))
    with pytest.raises(AcquisitionError, match="m1 failed in move: RuntimeError: m1 hit its"):
        await chain.run()
    assert journal[-2:] == ["m1.stop", "ctrl.stop"]


async def test_a_stop_error_after_success_is_raised_and_others_still_stopped() -> None:
    journal: list[str] = []
    chain, _, ctrl = step_chain(journal, npoints=1)
    ctrl.fail_in = "stop"
    with pytest.raises(AcquisitionError, match="diode_ctrl failed in stop"):
        await chain.run()
    assert "m1.stop" in journal


async def test_hardware_trigger_box_drives_detectors_frames_equal_pulses() -> None:
    journal: list[str] = []
    box = ClockedTriggerBox("tbox", journal)
    mca = HardwareDetector("mca", box, journal)
    cam = HardwareDetector("cam", box, journal)
    master = HardwareTriggerMaster(box, npoints=20, period=0.002, width=0.001)
    chain = AcquisitionChain()
    chain.add(master, AcquirableSlave(mca, trigger_type=TriggerType.HARDWARE))
    chain.add(master, AcquirableSlave(cam, trigger_type=TriggerType.HARDWARE, poll_interval=0.001))
    sink = subscribe(chain)
    with anyio.fail_after(10):
        await chain.run()
    for name in ("mca:spectrum", "cam:spectrum"):
        assert sink.indices(name) == list(range(20))
        assert sink.values(name)[:, 0].tolist() == list(range(20))
        assert sink.ended[name] == 20
    # armed before the pulses started, stopped after
    assert journal.index("mca.start") < journal.index("tbox.start_pulses")
    assert journal.index("cam.start") < journal.index("tbox.start_pulses")
    assert journal[-3:] == ["tbox.stop", "mca.stop", "cam.stop"]


async def test_hardware_detector_short_of_frames_fails_naming_it() -> None:
    journal: list[str] = []
    box = ClockedTriggerBox("tbox", journal)
    cam = HardwareDetector("cam", box, journal, miss_after=7)
    master = HardwareTriggerMaster(box, npoints=10, period=0.001, readout_timeout=0.2)
    chain = AcquisitionChain()
    chain.add(master, AcquirableSlave(cam, trigger_type=TriggerType.HARDWARE))
    with anyio.fail_after(10), pytest.raises(AcquisitionError) as info:
        await chain.run()
    assert info.value.device == "cam" and info.value.phase == "reading"
    assert "got 7 of 10 points" in str(info.value)
    assert "cam.stop" in journal


async def test_an_error_in_a_reading_loop_cancels_the_scan() -> None:
    journal: list[str] = []
    box = ClockedTriggerBox("tbox", journal)
    cam = HardwareDetector("cam", box, journal)

    async def broken_read() -> Mapping[str, np.ndarray]:
        raise ValueError("corrupted frame header")

    cam.read = broken_read  # type: ignore[method-assign]
    master = HardwareTriggerMaster(box, npoints=1000, period=0.01)  # 10 s of pulses
    chain = AcquisitionChain()
    chain.add(master, AcquirableSlave(cam, trigger_type=TriggerType.HARDWARE))
    with anyio.fail_after(5), pytest.raises(AcquisitionError) as info:
        await chain.run()
    assert str(info.value) == "cam failed in reading: ValueError: corrupted frame header"
    assert {"tbox.stop", "cam.stop"} <= set(journal)


async def test_abort_stops_every_node_within_100_ms() -> None:
    journal: list[str] = []
    chain, _motor, ctrl = step_chain(journal, npoints=10, count_time=1.0)
    ctrl.trigger_hook = anyio.Event()
    sink = subscribe(chain)
    control = ScanControl()
    failure: list[BaseException] = []
    done = anyio.Event()

    async def run() -> None:
        try:
            await chain.run(control)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await ctrl.trigger_hook.wait()  # counting the first point (1 s)
        t0 = time.perf_counter()
        control.abort()
        await done.wait()
        elapsed = time.perf_counter() - t0
    assert isinstance(failure[0], Aborted)
    assert control.state is ScanState.ABORTED
    assert journal[-2:] == ["m1.stop", "diode_ctrl.stop"]
    assert set(sink.ended) == {c.name for c in chain.channels}
    assert sink.ended["diode_ctrl:c0"] == 0
    assert elapsed < 0.5  # target 100 ms; margin for a loaded machine


async def test_outer_cancellation_cleans_up_and_propagates() -> None:
    journal: list[str] = []
    chain, _, ctrl = step_chain(journal, npoints=10, count_time=1.0)
    ctrl.trigger_hook = anyio.Event()
    control = ScanControl()
    cleaned_after = 0.0
    async with anyio.create_task_group() as tg:

        async def run(task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
            with anyio.CancelScope() as scope:
                task_status.started(scope)
                await chain.run(control)
            assert scope.cancel_called, "the run ended without being cancelled"

        scope = await tg.start(run)
        await ctrl.trigger_hook.wait()
        t0 = time.perf_counter()
        scope.cancel()
    cleaned_after = time.perf_counter() - t0
    assert journal[-2:] == ["m1.stop", "diode_ctrl.stop"]
    assert control.state is ScanState.ABORTED
    assert cleaned_after < 0.5


async def test_abort_of_a_timescan_running_until_stopped() -> None:
    journal: list[str] = []
    ctrl = CounterController("ctrl", journal)
    chain = AcquisitionChain()
    timer = SoftwareTimerMaster(0.0, npoints=0)
    chain.add(timer, AcquirableSlave(ctrl))
    sink = subscribe(chain)
    control = ScanControl()
    control.add_point_callback(lambda i, v: control.abort() if i == 99 else None)
    with pytest.raises(Aborted):
        await chain.run(control)
    assert sink.ended["ctrl:c0"] == 100
    assert sink.indices("ctrl:c0") == list(range(sink.ended["ctrl:c0"]))


async def test_pause_and_resume_hold_the_devices() -> None:
    journal: list[str] = []
    chain, _, _ctrl = step_chain(journal, npoints=5)
    control = ScanControl()
    sink = subscribe(chain)
    control.add_point_callback(lambda i, v: control.pause() if i == 1 else None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(chain.run, control)
        with anyio.fail_after(5):
            await control.wait_paused()
        assert control.point_index == 2 and control.pause_reason == "paused by user"
        assert not any(e.endswith(".stop") for e in journal)  # devices held
        control.resume()
    assert control.state is ScanState.DONE
    assert sink.indices("diode_ctrl:c0") == [0, 1, 2, 3, 4]
    assert journal.count("diode_ctrl.prepare") == 1


async def test_pause_condition_repeats_the_interrupted_point_without_duplicates() -> None:
    """The beam drops during point 2: the point is discarded, the scan pauses until the beam
    is back, then point 2 is made again; every index appears exactly once."""
    journal: list[str] = []
    chain, _motor, ctrl = step_chain(journal, npoints=5)
    beam = {"current": 200.0}
    original_trigger = ctrl.trigger

    async def trigger() -> None:
        await original_trigger()
        if ctrl.triggers == 3:  # during point 2
            beam["current"] = 0.0

    ctrl.trigger = trigger  # type: ignore[method-assign]
    condition = PauseCondition.below("beam lost", lambda: beam["current"], 100.0)
    control = ScanControl(pause_conditions=[condition])
    sink = subscribe(chain)
    async with anyio.create_task_group() as tg:
        tg.start_soon(chain.run, control)
        with anyio.fail_after(5):
            await control.wait_paused()
        assert control.pause_reason == "beam lost" and control.point_index == 2
        beam["current"] = 150.0
    assert control.state is ScanState.DONE and control.repeated_points == 1
    assert ctrl.triggers == 6
    for name in ("diode_ctrl:c0", "axis:m1", "timer:epoch"):
        assert sink.indices(name) == [0, 1, 2, 3, 4], name
    assert sink.values("axis:m1").tolist() == [0, 1, 2, 3, 4]
    # the repeated point's data is the second measurement of point 2 (trigger number 3)
    assert sink.values("diode_ctrl:c0").tolist() == [0, 10, 30, 40, 50]
    assert journal.count("m1.move(2)") == 2
    # the controller, prepared for 5 triggers, was re-armed for the 3 points still to come
    assert journal.count("diode_ctrl.prepare") == 2
    assert ctrl.params is not None and ctrl.params.npoints == 3
    rearm = journal.index("diode_ctrl.prepare", 1)
    assert journal[rearm - 1 : rearm + 3] == [
        "diode_ctrl.stop",
        "diode_ctrl.prepare",
        "diode_ctrl.start",
        "m1.move(2)",
    ]


async def test_pause_condition_before_a_point_waits_without_repeating() -> None:
    journal: list[str] = []
    chain, _, ctrl = step_chain(journal, npoints=3)
    gate = {"closed": True}

    async def closed() -> bool:
        return gate["closed"]

    control = ScanControl(pause_conditions=[PauseCondition("gate", closed, poll_interval=0.01)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(chain.run, control)
        with anyio.fail_after(5):
            await control.wait_paused()
        assert ctrl.triggers == 0 and control.pause_reason == "gate"
        gate["closed"] = False
    assert control.repeated_points == 0 and ctrl.triggers == 3


async def test_software_timer_counts_its_time() -> None:
    journal: list[str] = []
    ctrl = CounterController("ctrl", journal)
    chain = AcquisitionChain()
    timer = SoftwareTimerMaster(0.02, npoints=3, sleep_time=0.01)
    chain.add(timer, AcquirableSlave(ctrl))
    sink = subscribe(chain)
    t0 = time.perf_counter()
    await chain.run()
    assert time.perf_counter() - t0 >= 3 * 0.02 + 2 * 0.01
    elapsed = sink.values("timer:elapsed_time")
    assert np.all(np.diff(elapsed) >= 0.03 - 1e-3)
    assert ctrl.params is not None and ctrl.params.count_time == 0.02


async def test_a_device_hanging_in_stop_does_not_keep_the_others_running() -> None:
    journal: list[str] = []
    chain, motor, _ = step_chain(journal, npoints=2)
    chain.stop_timeout = 0.2

    async def hang() -> None:
        journal.append("m1.stop")
        await anyio.sleep_forever()

    motor.stop = hang  # type: ignore[method-assign]
    sink = subscribe(chain)
    with anyio.fail_after(5), pytest.raises(AcquisitionError) as info:
        await chain.run()
    assert str(info.value) == "m1 failed in stop: did not return within 0.2 s"
    assert journal[-2:] == ["m1.stop", "diode_ctrl.stop"]  # the controller still stopped
    assert sink.ended["diode_ctrl:c0"] == 2  # and the streams sealed


class FreeRunningCounter(CounterController):
    """Counts on its own clock once started (a buffered device in hardware mode): point k is
    made at start + k * count_time; read() hands over every point made since the last read."""

    def __init__(self, name: str, journal: list[str]) -> None:
        super().__init__(name, journal, ncounters=1)
        self.started_at = 0.0
        self.delivered = 0

    async def start(self) -> None:
        await super().start()
        self.started_at = time.monotonic()

    async def read(self) -> Mapping[str, np.ndarray]:
        assert self.params is not None
        made = int((time.monotonic() - self.started_at) / self.params.count_time)
        values = np.arange(self.delivered, made, dtype=float)
        self.delivered = made
        return {"c0": values}


async def test_a_free_running_device_under_a_software_timer_gives_exactly_its_points() -> None:
    journal: list[str] = []
    device = FreeRunningCounter("buffered", journal)
    chain = AcquisitionChain()
    timer = SoftwareTimerMaster(0.05, npoints=1)  # the time window
    slave = AcquirableSlave(
        device, trigger_type=TriggerType.HARDWARE, count_time=0.001, npoints=80, poll_interval=0.002
    )
    chain.add(timer, slave)
    sink = subscribe(chain)
    with anyio.fail_after(10):
        await chain.run()
    assert device.params is not None and device.params.trigger_mode is TriggerMode.HARDWARE
    # the chain waited for the reading loop after the 50 ms window; points beyond 80 dropped
    assert sink.values("buffered:c0").tolist() == list(range(80))
    assert sink.ended["buffered:c0"] == 80 and sink.ended["timer:epoch"] == 1
    assert len(sink.batches["buffered:c0"]) > 1  # read in chunks as the points came


@pytest.mark.parametrize("paused_by", ["user", "condition"])
async def test_abort_while_paused_stops_everything(paused_by: str) -> None:
    journal: list[str] = []
    chain, _, _ = step_chain(journal, npoints=5)
    blocked = {"now": False}
    control = ScanControl(
        pause_conditions=[PauseCondition("gate", lambda: blocked["now"], poll_interval=0.01)]
    )

    def on_point(index: int, values: object) -> None:
        if index == 1:
            if paused_by == "user":
                control.pause()
            else:
                blocked["now"] = True

    control.add_point_callback(on_point)
    outcome: list[BaseException] = []

    async def run() -> None:
        try:
            await chain.run(control)
        except BaseException as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(5):
            await control.wait_paused()
        assert not any(e.endswith(".stop") for e in journal)
        control.abort()
    assert isinstance(outcome[0], Aborted)
    assert control.state is ScanState.ABORTED
    assert journal[-2:] == ["m1.stop", "diode_ctrl.stop"]


async def test_a_software_device_returning_two_points_for_one_trigger_is_refused() -> None:
    journal: list[str] = []
    chain, _, ctrl = step_chain(journal, npoints=3)
    original_trigger = ctrl.trigger

    async def double_trigger() -> None:
        await original_trigger()
        await original_trigger()

    ctrl.trigger = double_trigger  # type: ignore[method-assign]
    with pytest.raises(AcquisitionError, match=r"diode_ctrl failed in read: read\(\) returned 2"):
        await chain.run()


async def test_a_chain_runs_once() -> None:
    journal: list[str] = []
    chain, _, _ = step_chain(journal, npoints=1)
    await chain.run()
    with pytest.raises(RuntimeError, match="build a new chain for each scan"):
        await chain.run()


async def test_a_zero_time_scan_leaves_the_loop_to_others() -> None:
    """50,000 points of devices that never wait: the chain's own loop must still yield (at
    least every millisecond), so another task keeps being served meanwhile. (Counted in
    wake-ups, not in stall times: on a loaded machine the OS preempts any busy loop.)"""
    journal: list[str] = []
    chain, _, _ = step_chain(journal, npoints=50_000)
    gaps: list[float] = []
    done = anyio.Event()

    async def other_reader() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await anyio.lowlevel.checkpoint()
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(other_reader)
        await chain.run()
        done.set()
    assert len(gaps) > 100  # served all along, not once at the end
    assert statistics.median(gaps) < 0.02  # the chain yields every millisecond or so
