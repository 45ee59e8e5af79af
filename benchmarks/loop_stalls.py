"""Event-loop stalls during the fairness scenario (tests/test_fairness.py).

The chain reads the simulated good device (buffered, hardware mode) and bad device (a packet
stream that drops what is not read within 0.1 s) while 16 other readers fetch and decode
64 kB payloads with 50 ms timeouts. The loop monitor (blissng.health) pings the loop every
millisecond meanwhile. Baseline: the same monitor on an idle loop for the same time, in the
same run. Target: p99 of the ping latency <= 5 ms; the max is reported with its culprit.

    python benchmarks/loop_stalls.py [duration_s]
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import anyio
from _figures import figure, sized

from blissng.health import LoopMonitor
from blissng.sim import bad_device_spec, open_sim_host, standard_spec

HERE = Path(__file__).resolve().parent


def load_scenario():  # the scenario is defined once, beside its test
    tests = HERE.parent / "tests"
    if str(tests) not in sys.path:
        sys.path.append(str(tests))  # the test module imports its helpers (sinks) from there
    path = tests / "test_fairness.py"
    spec = importlib.util.spec_from_file_location("fairness_scenario", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def show(metric: str, value: float, unit: str, baseline: float | None, target: str) -> None:
    figure("loop_stalls", metric, value, unit, baseline=baseline, target=target)


async def main(duration: float) -> None:
    scenario = load_scenario()
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            open_sim_host(standard_spec(Path(tmp) / "sims", seed=1)) as sims,
            open_sim_host(bad_device_spec(Path(tmp) / "bad")) as bad,
        ):
            async with LoopMonitor(threshold=0.005, interval=0.001, log_stalls=False) as idle:
                await anyio.sleep(duration)
            baseline = idle.stats()
            failure: Exception | None = None
            async with LoopMonitor(threshold=0.005, interval=0.001, log_stalls=False) as mon:
                try:
                    result = await scenario.run_fairness_scenario(
                        sims.url("good"),
                        bad.url("bad"),
                        duration=duration,
                        monitor=mon,
                        count_timeouts=True,
                    )
                except Exception as exc:  # a benchmark reports, it does not assert
                    failure = exc
            stats = mon.stats()
    if failure is not None:
        print(f"fairness scenario FAILED: {failure!r}\n{stats}")
        show("ping_latency_p99", stats.p99 * 1e3, "ms", baseline.p99 * 1e3, "<= 5")
        show("ping_latency_max", stats.max * 1e3, "ms", baseline.max * 1e3, "report")
        show("scenario_failed", 1.0, "bool", 0.0, "0")
        return
    produced, dropped = result.bad_end or (0, -1)
    reads = sum(r.reads for r in result.readers)
    timeouts = sum(r.timeouts for r in result.readers)
    print(
        f"fairness scenario {duration:g} s: {stats.count} pings, latency p50 "
        f"{stats.p50 * 1e3:.2f} ms, p99 {stats.p99 * 1e3:.2f} ms, max {stats.max * 1e3:.1f} ms "
        f"(idle loop: p99 {baseline.p99 * 1e3:.2f} ms, max {baseline.max * 1e3:.1f} ms); "
        f"{stats.stall_count} stalls > 5 ms; readers: {reads} payloads of 64 kB, {timeouts} "
        f"timeouts; good device "
        f"{result.good_points} points, overrun {result.good_overrun}; bad device dropped "
        f"{dropped} of {produced}"
    )
    for stall in stats.stalls[:5]:
        print(f"  stall {stall.duration * 1e3:6.1f} ms in {stall.culprit}")
    show("ping_latency_p99", stats.p99 * 1e3, "ms", baseline.p99 * 1e3, "<= 5")
    show("ping_latency_max", stats.max * 1e3, "ms", baseline.max * 1e3, "report")
    show("ping_latency_p50", stats.p50 * 1e3, "ms", baseline.p50 * 1e3, "report")
    show("bad_device_dropped", float(dropped), "packets", 0.0, "0")
    show("reader_timeouts", float(timeouts), "timeouts", 0.0, "0")


if __name__ == "__main__":
    anyio.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else sized(5.0, 0.5))
