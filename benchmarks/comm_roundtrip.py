"""Communication speed: request/response round trips per second through blissng.comm on the pty
(motor controller) and TCP (scaler) simulators, against a raw blocking client on the same
simulators (the baseline: what the transport costs without the comm layer); and the bad
device's delivered and dropped packets per second when one reader task reads it while 16 other
tasks read 64 kB payloads from the good device and decode them.

    python benchmarks/comm_roundtrip.py [--seconds 2]

Prints a human-readable line and one JSON line per figure. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from _figures import figure, sized

from blissng.comm import Connection, connection_from_url
from blissng.sim import (
    BAD_DEVICE_RATE,
    SimHost,
    bad_device_spec,
    open_sim_host,
    standard_spec,
)

BENCHMARK = "comm_roundtrip"


def emit(metric: str, value: float, unit: str, baseline: Any, target: Any, text: str) -> None:
    print(text)
    figure(BENCHMARK, metric, value, unit, baseline=baseline, target=target)


async def comm_roundtrips(conn: Connection, command: str, seconds: float) -> tuple[float, float]:
    """(round trips per second, CPU microseconds of this process per round trip)."""
    n = 0
    start, cpu = time.monotonic(), time.thread_time()
    while time.monotonic() - start < seconds:
        await conn.write_readline(command)
        n += 1
    return n / (time.monotonic() - start), (time.thread_time() - cpu) / n * 1e6


def raw_tcp_roundtrips(
    address: tuple[str, int], command: bytes, seconds: float
) -> tuple[float, float]:
    with socket.create_connection(address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n = 0
        start, cpu = time.monotonic(), time.thread_time()
        while time.monotonic() - start < seconds:
            sock.sendall(command)
            data = b""
            while not data.endswith(b"\n"):
                data += sock.recv(4096)
            n += 1
        return n / (time.monotonic() - start), (time.thread_time() - cpu) / n * 1e6


def echo_floor(kind: str, seconds: float) -> float:
    """Round trips per second of a raw blocking client against a thread that echoes (TCP
    loopback or a pty): what the transport and the machine allow, with no simulator."""
    import threading
    import tty

    stop = threading.Event()
    if kind == "tcp":
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        for sock in (client, peer):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer.settimeout(0.2)

        def echo() -> None:
            while not stop.is_set():
                try:
                    data = peer.recv(4096)
                except TimeoutError:
                    continue
                if not data:
                    return
                peer.sendall(data)

        def roundtrip() -> None:
            client.sendall(b"?POS 1\n")
            data = b""
            while not data.endswith(b"\n"):
                data += client.recv(4096)

        closers = [client.close, peer.close, server.close]
    else:
        master, slave = os.openpty()
        tty.setraw(slave)

        def echo() -> None:
            import select

            while not stop.is_set():
                if select.select([master], [], [], 0.2)[0]:
                    os.write(master, os.read(master, 4096))

        def roundtrip() -> None:
            os.write(slave, b"?POS 1\r")
            data = b""
            while not data.endswith(b"\r"):
                data += os.read(slave, 4096)

        closers = [lambda: os.close(master), lambda: os.close(slave)]
    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    try:
        n = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            roundtrip()
            n += 1
        return n / (time.monotonic() - start)
    finally:
        stop.set()
        thread.join()
        for close in closers:
            close()


def raw_pty_roundtrips(path: str, command: bytes, seconds: float) -> tuple[float, float]:
    import termios
    import tty

    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        termios.tcflush(fd, termios.TCIOFLUSH)
        n = 0
        start, cpu = time.monotonic(), time.thread_time()
        while time.monotonic() - start < seconds:
            os.write(fd, command)
            data = b""
            while not data.endswith(b"\r\n"):
                data += os.read(fd, 4096)
            n += 1
        return n / (time.monotonic() - start), (time.thread_time() - cpu) / n * 1e6
    finally:
        os.close(fd)


async def bad_device_throughput(
    bad: SimHost, main: SimHost, rate: float, others: int, seconds: float
) -> dict[str, float]:
    """One reader of the bad device while ``others`` tasks read and decode 64 kB payloads:
    delivered and dropped packets per second, the reader's longest gap between two reads and
    how late the device ever was on its own schedule (its process is starved by the machine)."""
    await bad.reset()
    delivered = 0
    longest_gap = 0.0

    async def other_reader(stop: anyio.Event) -> None:
        async with connection_from_url(main.url("good"), name="good", timeout=5) as good:
            await good.write_readline("START 1000000")
            while not stop.is_set():
                async with good.locked():
                    header = (await good.write_readline("READ 8192")).split()
                    block = await good.read(int(header[1]) * 8)
                values = np.frombuffer(block, "<f8")  # decode the 64 kB payload
                float(np.sqrt(values * values).sum())
                await anyio.lowlevel.checkpoint()

    conn = connection_from_url(bad.url("bad"), name="bad", timeout=5)
    async with conn:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            for _ in range(others):
                tg.start_soon(other_reader, stop)
            await conn.write_readline(f"START {rate:g}")
            start = last = time.monotonic()
            while last - start < seconds:
                delivered += (await conn.read_some()).count(b"\n")
                now = time.monotonic()
                longest_gap = max(longest_gap, now - last)
                last = now
            elapsed = last - start
            stats = await bad.stats("bad")
            stop.set()
        await conn.write("STOP")
        while not (await conn.readline()).startswith("END"):
            pass
    return {
        "delivered": delivered / elapsed,
        "dropped": stats["dropped"] / elapsed,
        "produced": stats["produced"] / elapsed,
        "gap": longest_gap,
        "late": stats["max_late"],
    }


def describe(figures: dict[str, float]) -> str:
    return (
        f"produced {figures['produced']:.0f}/s, delivered {figures['delivered']:.0f}/s, dropped"
        f" {figures['dropped']:.0f}/s; longest reader gap {figures['gap'] * 1e3:.0f} ms, device"
        f" late by up to {figures['late'] * 1e3:.0f} ms"
    )


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            open_sim_host(standard_spec(Path(tmp) / "main")) as main_host,
            open_sim_host(bad_device_spec(Path(tmp) / "bad")) as bad_host,
        ):
            motors = connection_from_url(main_host.url("motors"), name="motors")
            async with motors:
                pty_rate, pty_cpu = await comm_roundtrips(motors, "?POS 1", seconds)
            pty_path = main_host["motors"].path
            assert pty_path is not None
            raw_pty, raw_pty_cpu = await anyio.to_thread.run_sync(
                raw_pty_roundtrips, pty_path, b"?POS 1\r", seconds
            )
            scaler = connection_from_url(main_host.url("scaler"), name="scaler")
            async with scaler:
                tcp_rate, tcp_cpu = await comm_roundtrips(scaler, "*IDN?", seconds)
            sim = main_host["scaler"]
            assert sim.host is not None and sim.port is not None
            raw_tcp, raw_tcp_cpu = await anyio.to_thread.run_sync(
                raw_tcp_roundtrips, (sim.host, sim.port), b"*IDN?\n", seconds
            )
            for transport in ("pty", "tcp"):
                floor = await anyio.to_thread.run_sync(echo_floor, transport, seconds)
                emit(
                    f"{transport}_echo_floor_roundtrips_per_s",
                    floor,
                    "1/s",
                    None,
                    None,
                    f"{transport} echo floor (raw blocking client, echo thread, no simulator):"
                    f" {floor:.0f} round trips/s",
                )
            for transport, rate, raw, cpu, raw_cpu, what in (
                ("pty", pty_rate, raw_pty, pty_cpu, raw_pty_cpu, "motor controller '?POS 1'"),
                ("tcp", tcp_rate, raw_tcp, tcp_cpu, raw_tcp_cpu, "scaler '*IDN?'"),
            ):
                emit(
                    f"{transport}_roundtrips_per_s",
                    rate,
                    "1/s",
                    raw,
                    1000,
                    f"{transport} ({what}): {rate:.0f} round trips/s via blissng.comm, raw"
                    f" blocking client {raw:.0f}/s",
                )
                emit(
                    f"{transport}_client_cpu_us_per_roundtrip",
                    cpu,
                    "us",
                    raw_cpu,
                    300,
                    f"{transport}: {cpu:.0f} us of client CPU per round trip via blissng.comm"
                    f" (asyncio), raw blocking client {raw_cpu:.0f} us (load-independent figure)",
                )

            offered = 20000.0
            alone = await bad_device_throughput(bad_host, main_host, offered, 0, seconds)
            busy = await bad_device_throughput(bad_host, main_host, offered, 16, seconds)
            emit(
                "bad_device_delivered_per_s_with_16_readers",
                busy["delivered"],
                "packets/s",
                alone["delivered"],
                5 * BAD_DEVICE_RATE,
                f"bad device offered {offered:.0f}/s, one reader among 16 tasks decoding 64 kB"
                f" payloads: {describe(busy)}\n  (reader alone: {describe(alone)});"
                f" the test default rate {BAD_DEVICE_RATE:.0f}/s must stay <= a fifth of the"
                " delivered figure",
            )
            emit(
                "bad_device_dropped_per_s_with_16_readers",
                busy["dropped"],
                "packets/s",
                alone["dropped"],
                None,
                f"bad device offered {offered:.0f}/s: dropped {busy['dropped']:.0f}/s with 16"
                f" busy tasks, {alone['dropped']:.0f}/s alone",
            )
            for rate in (BAD_DEVICE_RATE, 5 * BAD_DEVICE_RATE):
                figures = await bad_device_throughput(bad_host, main_host, rate, 16, seconds)
                emit(
                    f"bad_device_at_{rate:.0f}_dropped_per_s_with_16_readers",
                    figures["dropped"],
                    "packets/s",
                    None,
                    0,
                    f"bad device at {rate:.0f}/s with 16 busy tasks: {describe(figures)}",
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=sized(2.0, 0.1), help="per measurement")
    anyio.run(main, parser.parse_args().seconds)
