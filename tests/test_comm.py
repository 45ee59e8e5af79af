"""blissng.comm through the real transports (a pty and TCP sockets to the simulators)."""

from __future__ import annotations

import logging
import re
import socket
import time

import anyio
import numpy as np
import pytest

from blissng.comm import (
    CommTimeout,
    CommunicationError,
    Connection,
    ConnectionLost,
    ProtocolError,
    SerialConnection,
    TcpConnection,
    connection_from_url,
    debugoff,
    debugon,
)
from blissng.sim import SimHost

pytestmark = pytest.mark.anyio


def connect(sims: SimHost, name: str, timeout: float = 2.0) -> Connection:
    return connection_from_url(sims.url(name), name=name, timeout=timeout)


async def test_tcp_request_reply(sims: SimHost) -> None:
    async with connect(sims, "scaler") as scaler:
        assert isinstance(scaler, TcpConnection)
        assert await scaler.write_readline("*IDN?") == "SIMSCALER 4 1.0"
        assert (await scaler.write_readline("?CHAN")).split() == ["timer", "mon", "det", "diode"]


async def test_serial_pty_request_reply(sims: SimHost) -> None:
    async with connect(sims, "motors") as motors:
        assert isinstance(motors, SerialConnection)
        assert motors.eol == b"\r\n" and motors.write_eol == b"\r"
        assert await motors.write_readline("*IDN?") == "SIMMOT 6 1.0"
        assert await motors.write_readline("POS 3 1234") == "OK"
        assert await motors.write_readline("?POS 3") == "1234"


@pytest.mark.parametrize("name", ["scaler", "motors"])
async def test_silent_device_times_out_naming_device_command_and_time(
    sims: SimHost, name: str
) -> None:
    async with connect(sims, name, timeout=0.3) as conn:
        assert (await conn.write_readline("*IDN?")).startswith("SIM")
        await sims.fault(name, "silent")
        start = time.monotonic()
        with pytest.raises(CommTimeout) as info:
            await conn.write_readline("*IDN?")
        elapsed = time.monotonic() - start
        assert 0.3 <= elapsed < 0.3 * 5
        error = info.value
        assert error.device == name
        assert error.waited >= 0.3
        assert name in str(error) and "*IDN?" in str(error) and "0.3" in str(error)
        assert isinstance(error, TimeoutError)  # usable with generic timeout handling
        await sims.fault(name, "none")
        assert (await conn.write_readline("*IDN?")).startswith("SIM")


@pytest.mark.parametrize("name", ["scaler", "motors", "mca", "camera", "trigger", "good"])
async def test_garbage_reply_is_a_protocol_error(sims: SimHost, name: str) -> None:
    async with connect(sims, name) as conn:
        await sims.fault(name, "garbage")
        with pytest.raises(ProtocolError) as info:
            await conn.write_readline("*IDN?")
        assert name in str(info.value) and "not ascii" in str(info.value)
        await sims.fault(name, "none")
        assert (await conn.write_readline("*IDN?")).startswith("SIM")


async def test_unexpected_reply_is_a_protocol_error(sims: SimHost) -> None:
    async with connect(sims, "motors") as motors:
        with pytest.raises(ProtocolError, match=r"unexpected reply 'ERR 3"):
            await motors.write_readline("?POS 9", expect=r"-?\d+")
        assert await motors.write_readline("?POS 1", expect=re.compile(r"-?\d+")) == "0"


@pytest.mark.parametrize("name", ["scaler", "motors"])
async def test_disconnect_is_recovered_on_next_command(sims: SimHost, name: str) -> None:
    async with connect(sims, name) as conn:
        assert (await conn.write_readline("*IDN?")).startswith("SIM")
        assert conn.connects == 1
        result = await sims.disconnect(name)
        assert result["disconnected"] == 1
        # The very next command works: the lost line is noticed before sending.
        assert (await conn.write_readline("*IDN?")).startswith("SIM")
        assert conn.connects == 2


async def test_disconnect_while_waiting_for_a_reply_raises_connection_lost(
    sims: SimHost,
) -> None:
    async with connect(sims, "scaler") as conn:
        await sims.fault("scaler", "silent")
        async with anyio.create_task_group() as tg:

            async def request() -> None:
                with pytest.raises(ConnectionLost, match="scaler"):
                    await conn.write_readline("*IDN?")

            tg.start_soon(request)
            # Wait until the request reached the device, then pull the plug.
            with anyio.fail_after(5):
                while (await sims.stats("scaler"))["requests"] < 1:
                    await anyio.sleep(0.005)
            await sims.disconnect("scaler")
        await sims.fault("scaler", "none")
        assert await conn.write_readline("*IDN?") == "SIMSCALER 4 1.0"


@pytest.mark.parametrize(
    ("name", "idn"), [("scaler", "SIMSCALER 4 1.0"), ("motors", "SIMMOT 6 1.0")]
)
async def test_slow_device_answers_late_and_times_out_when_too_slow(
    sims: SimHost, name: str, idn: str
) -> None:
    async with connect(sims, name, timeout=2.0) as conn:
        await sims.fault(name, "slow", delay=0.2)
        start = time.monotonic()
        assert await conn.write_readline("*IDN?") == idn
        assert time.monotonic() - start >= 0.2
        await sims.fault(name, "slow", delay=0.6)
        with pytest.raises(CommTimeout, match=name):
            await conn.write_readline("?STA", timeout=0.2)
        await sims.fault(name, "none")
        # The late reply to ?STA is never taken for the answer to this command: TCP reopens a
        # clean socket; on the serial line the late reply comes and `expect` recognises it.
        assert await conn.write_readline("*IDN?", expect="SIM.*") == idn
        # (0 on the pty only if the machine stalled so long that the reply came before reopen)
        assert conn.late_replies_skipped in ((0, 1) if name == "motors" else (0,))


async def test_faults_do_not_disturb_other_devices(sims: SimHost) -> None:
    await sims.fault("scaler", "silent")
    await sims.fault("mca", "slow", delay=1.0)
    latencies: list[float] = []
    async with (
        connect(sims, "scaler", timeout=1.0) as scaler,
        connect(sims, "mca", timeout=5.0) as mca,
        connect(sims, "motors") as motors,
        connect(sims, "camera") as camera,
    ):

        async def stuck_scaler() -> None:
            with pytest.raises(CommTimeout):
                await scaler.write_readline("*IDN?")

        async def slow_mca() -> None:
            assert await mca.write_readline("?NBIN") == "1024"

        async with anyio.create_task_group() as tg:
            tg.start_soon(stuck_scaler)
            tg.start_soon(slow_mca)
            for _ in range(20):
                start = time.monotonic()
                assert await motors.write_readline("?POS 1") == "0"
                assert await camera.write_readline("?SIZE") == "128 96"
                latencies.append(time.monotonic() - start)
    assert max(latencies) < 0.5, latencies


@pytest.mark.parametrize("name", ["motors", "scaler"])
async def test_concurrent_tasks_never_interleave(sims: SimHost, name: str) -> None:
    async with connect(sims, name, timeout=5.0) as conn:
        if name == "motors":
            for axis in range(1, 7):
                await conn.write_readline(f"POS {axis} {axis * 1111}")
            requests = {f"?POS {axis}": str(axis * 1111) for axis in range(1, 7)}
            requests["?STA"] = " ".join(["READY"] * 6)
        else:
            requests = {
                "*IDN?": "SIMSCALER 4 1.0",
                "?CHAN": "timer mon det diode",
                "?STA": "IDLE",
                "?NPT": "0",
                "BOGUS": "ERR 1 unknown command 'BOGUS'",
            }
        commands = list(requests)
        mismatches: list[tuple[str, str]] = []

        async def worker(index: int) -> None:
            for i in range(15):
                command = commands[(index + i) % len(commands)]
                reply = await conn.write_readline(command)
                if reply != requests[command]:
                    mismatches.append((command, reply))

        async with anyio.create_task_group() as tg:
            for index in range(40):
                tg.start_soon(worker, index)
        assert mismatches == []


async def test_lock_held_across_calls_keeps_a_multi_part_exchange_together(
    sims: SimHost,
) -> None:
    async with connect(sims, "good") as good:
        assert await good.write_readline("START 1000000") == "OK"

        async def read_block() -> np.ndarray:
            async with good.locked():  # header line + binary block, nobody in between
                header = (await good.write_readline("READ 4096")).split()
                assert header[0] == "DATA" and header[2] == "f8"
                n = int(header[1])
                return np.frombuffer(await good.read(n * 8), "<f8")

        blocks: list[np.ndarray] = []

        async def reader() -> None:
            for _ in range(10):
                blocks.append(await read_block())
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(reader)
        values = np.sort(np.concatenate(blocks))
        assert len(values) > 0
        # Every point exactly once, in one contiguous run from 0.
        assert np.array_equal(values, np.arange(len(values), dtype=float))


async def test_write_readlines_read_until_and_read_some(sims: SimHost) -> None:
    async with connect(sims, "motors") as motors:
        await motors.write("?POS 1\r?POS 2\r")
        assert await motors.readlines(2) == ["0", "0"]
        assert await motors.write_readlines("?POS 3\r?STA 3", 2) == ["0", "READY"]
        await motors.write("?VEL 1")
        assert await motors.read_until(b"\r\n") == b"2000"
        await motors.write(b"?ACC 1\r")
        data = b""
        while not data.endswith(b"\r\n"):
            data += await motors.read_some()
        assert data == b"20000\r\n"


async def test_connection_refused_names_device_and_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = TcpConnection("nowhere", "127.0.0.1", port, timeout=1.0)
    with pytest.raises(CommunicationError, match=rf"'nowhere'.*tcp://127.0.0.1:{port}"):
        await conn.write_readline("*IDN?")


async def test_bad_addresses_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="unknown scheme 'http'"):
        connection_from_url("http://x:1", name="dev")
    with pytest.raises(ValueError, match="cannot understand address"):
        connection_from_url("nonsense", name="dev")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        TcpConnection("dev", "localhost", 1, timeout=0)


class _Controller:
    """Something holding a connection, as device controllers do."""

    __module__ = "blissng.devices.example"

    def __init__(self, conn: Connection) -> None:
        self.comm = conn


async def test_debugon_traces_one_device_at_run_time(
    sims: SimHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.setLevel(logging.DEBUG)  # the handler takes all; loggers decide
    async with connect(sims, "scaler") as scaler, connect(sims, "motors") as motors:
        await scaler.write_readline("*IDN?")
        assert not [r for r in caplog.records if r.name.startswith("blissng.comm")]
        names = debugon(_Controller(scaler))
        assert names == ["blissng.comm.scaler"]
        try:
            await scaler.write_readline("?CHAN")
            await motors.write_readline("?POS 1")
            traced = [r.getMessage() for r in caplog.records if r.name == "blissng.comm.scaler"]
            assert "-> b'?CHAN\\n'" in traced
            assert any(m.startswith("<- b'timer mon") for m in traced)
            assert not [r for r in caplog.records if r.name == "blissng.comm.motors"]
        finally:
            debugoff("scaler")
        caplog.clear()
        await scaler.write_readline("?CHAN")
        assert not [r for r in caplog.records if r.name == "blissng.comm.scaler"]
    with pytest.raises(ValueError, match="holds no blissng.comm connection"):
        debugon(object())


async def test_a_cancelled_request_never_leaves_its_late_reply_for_the_next(
    sims: SimHost,
) -> None:
    async with connect(sims, "scaler", timeout=5.0) as conn:
        await sims.fault("scaler", "slow", delay=0.3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.write_readline, "*IDN?")
            with anyio.fail_after(5):  # the device has the request: abort it
                while (await sims.stats("scaler"))["requests"] < 1:
                    await anyio.sleep(0.005)
            tg.cancel_scope.cancel()
        await sims.fault("scaler", "none")
        assert await conn.write_readline("?CHAN") == "timer mon det diode"
        assert conn.connects == 2


async def test_a_cancelled_request_s_late_reply_that_looks_like_the_next_one_s_is_dropped(
    sims: SimHost,
) -> None:
    """On a serial line (the pty) the late reply of a cancelled command comes after the port is
    reopened. When it looks like the next command's reply (OK for OK: a cancelled move, then a
    stop), it must still not be taken for it, or every later reply is one behind."""
    async with connect(sims, "motors", timeout=2.0) as conn:
        await sims.fault("motors", "slow", delay=0.3)
        before = (await sims.stats("motors"))["requests"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.write_readline, "VEL 1 2000")
            with anyio.fail_after(5):  # the device has the request: abort it (Ctrl-C)
                while (await sims.stats("motors"))["requests"] <= before:
                    await anyio.sleep(0.005)
            tg.cancel_scope.cancel()
        await sims.fault("motors", "none")
        assert await conn.write_readline("ACC 1 20000", expect="OK|ERR.*") == "OK"
        assert await conn.write_readline("?STA 1", expect="READY|MOVING|ERR.*") == "READY"
        assert await conn.write_readline("*IDN?") == "SIMMOT 6 1.0"


async def test_a_cancelled_serial_request_whose_reply_came_costs_the_next_no_timeout(
    sims: SimHost,
) -> None:
    """Reopening a serial port flushes what it received: the reply of a cancelled request,
    come meanwhile, was lost and the next request waited a whole timeout for it (a Ctrl-C
    took 2 s to stop a motor). The line stays open: the reply is read and dropped at once."""
    async with connect(sims, "motors", timeout=2.0) as conn:
        await sims.fault("motors", "slow", delay=0.2)
        before = (await sims.stats("motors"))["requests"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.write_readline, "?POS 1")
            with anyio.fail_after(5):
                while (await sims.stats("motors"))["requests"] <= before:
                    await anyio.sleep(0.005)
            tg.cancel_scope.cancel()
        await anyio.sleep(0.5)  # its reply has come
        await sims.fault("motors", "none")
        started = time.monotonic()
        assert await conn.write_readline("?STA 1", expect="READY|MOVING|ERR.*") == "READY"
        assert time.monotonic() - started < 1.0  # not the 2 s timeout
        assert conn.connects == 1


async def test_a_serial_device_stopped_then_resumed_is_not_one_reply_behind_for_ever(
    sims: SimHost,
) -> None:
    """A device that stops answering (its process stopped, SIGSTOP) keeps the commands sent
    meanwhile and answers them all when it resumes. The connection forgot the replies it
    was owed after a short wait: on the demo, every motor command after a 6 s stop got the
    reply of an earlier one (``?POS`` answered ``OK``), for ever. Now it keeps count and the
    request's reply is the last line of the burst."""
    import psutil

    host = psutil.Process(sims.pid)
    async with connect(sims, "motors", timeout=0.3) as conn:
        assert await conn.write_readline("?POS 1") == "0"
        host.suspend()
        try:
            for command in ("?STA 1", "VEL 1 2000", "?POS 1"):
                with pytest.raises(CommTimeout, match=r"'motors': no complete reply"):
                    await conn.write_readline(command)
        finally:
            host.resume()
        # no `expect`: the count alone keeps the replies in step
        assert await conn.write_readline("ACC 1 20000") == "OK"
        assert await conn.write_readline("?POS 1") == "0"
        assert await conn.write_readline("?STA 1") == "READY"
        assert await conn.write_readline("*IDN?") == "SIMMOT 6 1.0"
        assert conn.late_replies_skipped == 3
        assert conn.connects == 1  # the line stayed open: reopening flushes what came
