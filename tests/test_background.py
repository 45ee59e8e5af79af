"""Background tasks: a PID regulation of the simulated heater, monitoring, failures."""

import itertools

import anyio
import pytest

from blissng.devices import DeviceError, RegulationLoop
from blissng.session import TaskState
from blissng.session._background import BackgroundTasks, Monitor
from blissng.sim import SimHeater

pytestmark = pytest.mark.anyio


def heater_loop(setpoint: float, ramp_rate: float | None = None):
    heater = SimHeater("heater", ambient=20.0, gain=1.0, tau=0.3, seed=1)
    loop = RegulationLoop(
        "heater_loop",
        heater.read_temperature,
        heater.set_power,
        kp=8.0,
        ki=6.0,
        setpoint=setpoint,
        ramp_rate=ramp_rate,
    )
    return heater, loop


@pytest.mark.timeout(30)
async def test_regulation_reaches_and_holds_the_setpoint():
    heater, loop = heater_loop(setpoint=45.0)
    settled = anyio.Event()
    in_band = 0

    async def step():
        nonlocal in_band
        await loop.step()
        in_band = in_band + 1 if abs(loop.last_input - 45.0) < 0.2 else 0
        if in_band >= 25:
            settled.set()

    async with BackgroundTasks() as tasks:
        task = tasks.start("heater_loop", step, period=0.01)
        await settled.wait()
        await tasks.stop("heater_loop")
    assert task.state is TaskState.STOPPED
    assert abs(await heater.read_temperature() - 45.0) < 0.5
    assert 0.0 < heater.power <= 100.0


@pytest.mark.timeout(30)
async def test_setpoint_ramps_at_its_rate():
    _, loop = heater_loop(setpoint=20.0, ramp_rate=50.0)
    await loop.step()
    loop.setpoint = 30.0
    reached = anyio.Event()
    samples: list[tuple[float, float]] = []

    async def step():
        await loop.step()
        samples.append((loop.last_step_time, loop.working_setpoint))
        if not loop.ramping:
            reached.set()

    async with BackgroundTasks() as tasks:
        tasks.start("ramp", step, period=0.01)
        await reached.wait()
        await tasks.stop("ramp")
    (t0, s0), (t1, s1) = samples[0], samples[-1]
    assert s1 == 30.0
    # 10 K at 50 K/s takes 0.2 s: never faster than the rate allows.
    for (ta, sa), (tb, sb) in itertools.pairwise(samples):
        assert sb - sa <= 50.0 * (tb - ta) + 1e-9
    assert t1 - t0 >= (30.0 - s0) / 50.0 - 0.02


@pytest.mark.timeout(30)
async def test_period_is_kept_while_the_loop_is_busy_elsewhere():
    ticks = 0
    done = anyio.Event()

    async def tick():
        nonlocal ticks
        ticks += 1
        if ticks >= 100:
            done.set()

    async def busy_scan():
        # A scan-like load: short bursts of work with checkpoints between points.
        while not done.is_set():
            sum(range(2000))
            await anyio.lowlevel.checkpoint()

    async with BackgroundTasks() as tasks, anyio.create_task_group() as tg:
        tg.start_soon(busy_scan)
        task = tasks.start("monitor", tick, period=0.005)
        await done.wait()
        await tasks.stop("monitor")
    stats = task.jitter.summary()
    assert stats["ticks"] >= 100
    # Tick lateness stays well under the period's scale (generous for a loaded CI machine).
    assert stats["median"] < 0.02, stats


async def test_a_device_error_leaves_the_task_failing_until_its_device_answers_again():
    seen: list[TaskState] = []  # the task's state as each step starts
    fifth_step = anyio.Event()

    async def thermometer():
        seen.append(tasks.tasks["thermo_monitor"].state)
        if len(seen) <= 3:
            raise DeviceError("thermometer", "no reply after 3 s")
        if len(seen) == 5:
            fifth_step.set()

    async with BackgroundTasks() as tasks:
        task = tasks.start("thermo_monitor", thermometer, period=0.01)
        await fifth_step.wait()
        assert seen[:5] == [TaskState.RUNNING, *[TaskState.FAILING] * 3, TaskState.RUNNING]
        assert task.failed_steps == 3 and task.error is None and not task.stopped.is_set()


async def test_a_failing_task_is_still_running_for_a_second_start_of_its_name():
    failed = anyio.Event()

    async def unplugged():
        failed.set()
        raise DeviceError("thermometer", "no reply after 3 s")

    async def other():
        pass

    async with BackgroundTasks() as tasks:
        task = tasks.start("thermo_monitor", unplugged, period=0.01)
        await failed.wait()
        assert task.state is TaskState.FAILING
        with pytest.raises(ValueError, match="already running"):
            tasks.start("thermo_monitor", other, period=0.01)
        assert tasks.tasks["thermo_monitor"] is task
        await tasks.stop("thermo_monitor")  # the name still stops it
        assert task.stopped.is_set() and task.state is TaskState.STOPPED


async def test_failing_task_stops_alone_with_its_error():
    monitor_ticks = anyio.Event()
    readings = 0

    async def read():
        nonlocal readings
        readings += 1
        if readings >= 5:
            monitor_ticks.set()
        return {"diode": float(readings)}

    async def broken():
        raise RuntimeError("thermometer unplugged")

    monitor = Monitor("diode_monitor", read)
    async with BackgroundTasks() as tasks:
        bad = tasks.start("broken", broken, period=0.01)
        tasks.start("diode_monitor", monitor.step, period=0.01)
        await bad.stopped.wait()
        await monitor_ticks.wait()
        assert bad.state is TaskState.FAILED and "thermometer unplugged" in repr(bad.error)
        assert tasks.tasks["diode_monitor"].state is TaskState.RUNNING
        with pytest.raises(ValueError, match="already running"):
            tasks.start("diode_monitor", monitor.step, period=0.01)
    assert monitor.last == {"diode": float(readings)}
    assert len(monitor.history) == readings
