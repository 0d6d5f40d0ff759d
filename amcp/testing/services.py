"""Private Redis and PostgreSQL server processes that a test may stop, crash and restart.

:class:`amcp.testing.tcp_proxy.TcpProxy` models a service restart as cut connections; these
classes run the real servers, each on its own free port of 127.0.0.1 and in its own temporary
directory, so a test can restart them for real and the clients see what they would in
production::

    with PrivatePostgres() as postgres, PrivateRedis() as redis:
        store = TradingStateStore(postgres.url)   # postgresql+psycopg2://postgres@127.0.0.1:<port>/test
        stream = EventStream(redis.url)           # redis://127.0.0.1:<port>/0
        ...
        postgres.stop()      # a clean (fast) shutdown: committed data stays on disk
        postgres.start()     # the same port, so clients reconnect to the same URL
        redis.kill()         # SIGKILL, a crash
        redis.start()        # an empty Redis: it keeps nothing on disk
        postgres.restart()   # stop() then start()

- :meth:`start` returns once the server accepts connections, or raises :class:`ServiceError`
  with the tail of the server's log (it exited, or did not become ready in time).
- :meth:`stop` shuts the server down cleanly (Redis: ``SIGTERM``; PostgreSQL: ``SIGINT``, a fast
  shutdown that ends every session and writes a checkpoint). :meth:`kill` sends ``SIGKILL`` to
  the server and every process it started (PostgreSQL: the postmaster and every backend at
  once), as a crash would; PostgreSQL runs crash recovery on the next :meth:`start`.
- Redis runs with no persistence (no RDB snapshot, no append-only file): every restart starts
  empty. PostgreSQL runs with ``fsync=off`` (and synchronous commits): a killed server loses no
  committed transaction, since the operating system still holds its log; only a machine crash would.
- :meth:`close` (or leaving the ``with`` block) stops the server, killing it if a clean stop
  fails, reaps its processes and removes the temporary directory.

PostgreSQL's ``initdb`` and ``postgres`` refuse to run as root: when the tests run as root the
server runs as the ``postgres`` operating-system user, in a directory handed to that user.
:meth:`PrivateRedis.available` and :meth:`PrivatePostgres.available` say whether this machine can
run them. Linux only: :meth:`kill` finds the server's processes in ``/proc``.
"""

from __future__ import annotations

import abc
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from amcp.errors import AmcpError

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 30.0
DEFAULT_STOP_TIMEOUT_S = 30.0
_POLL_S = 0.05
_PROBE_TIMEOUT_S = 1  # whole seconds: pg_isready takes no fraction
_LOG_TAIL_LINES = 30
_POSTGRES_TOOLS = ("initdb", "postgres", "pg_isready")
_POSTGRES_SETTINGS = {
    "listen_addresses": HOST,
    # no fsync: a killed server still loses no commit (each commit's WAL is written to the operating
    # system before the commit returns, as synchronous_commit=on, the default, requires)
    "fsync": "off",
    "full_page_writes": "off",
}


class ServiceError(AmcpError):
    """A private server could not be set up, started or stopped, or was used in the wrong state."""


def free_port(host: str = HOST) -> int:
    """A TCP port of ``host`` that nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class _PrivateServer(abc.ABC):
    """One server process on a fixed port with a private directory; see the module docstring.

    Subclasses say how to prepare the directory, the command line, the clean-stop signal and
    how to tell the server accepts connections.
    """

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, *, port: int = 0, start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
                 stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S, base_dir: str | None = None) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65_535:
            raise ServiceError(f"{self.name}: port must be an int from 0 to 65535 (0: a free one), got {port!r}")
        for what, value in (("start_timeout_s", start_timeout_s), ("stop_timeout_s", stop_timeout_s)):
            if not value > 0:
                raise ServiceError(f"{self.name}: {what} must be positive seconds, got {value!r}")
        self.port = port or free_port()
        self.start_timeout_s = float(start_timeout_s)
        self.stop_timeout_s = float(stop_timeout_s)
        self._base_dir = base_dir
        self._directory: Path | None = None
        self._prepared = False
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False

    # ------------------------------------------------------------------ public

    @property
    def directory(self) -> Path:
        """The private directory (data, log); created by the first :meth:`start`.

        Raises:
            ServiceError: before the first start or after :meth:`close`.
        """
        if self._directory is None:
            raise ServiceError(f"{self.name} on port {self.port}: no directory; start() it first")
        return self._directory

    @property
    def log_path(self) -> Path:
        """The server's log (its stdout and stderr over every start)."""
        return self.directory / "server.log"

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process group id) while it runs; None otherwise."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may not accept connections yet)."""
        return self.pid is not None

    def start(self) -> None:
        """Start the server and return once it accepts connections on :attr:`port`.

        Raises:
            ServiceError: if closed or already running, if setting up the directory fails, or if
                the server exits or is not ready within :attr:`start_timeout_s` (the message
                holds the tail of its log).
        """
        if self._closed:
            raise ServiceError(f"{self.name} on port {self.port}: closed; create a new one")
        if self._process is not None and self._process.poll() is None:
            raise ServiceError(f"{self.name} on port {self.port}: already running (pid {self._process.pid})")
        self._process = None
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix=f"amcp-{self.name}-", dir=self._base_dir))
            self._own(self._directory)
        if not self._prepared:
            self._prepare(self._directory)
            self._prepared = True
        with open(self.log_path, "ab") as log:
            try:
                process = subprocess.Popen(self._command(self._directory), stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, cwd=self._directory, start_new_session=True,
                                           **self._run_as())
            except OSError as exc:
                raise ServiceError(f"{self.name} on port {self.port}: cannot start: {exc}") from exc
        self._process = process
        deadline = time.monotonic() + self.start_timeout_s
        while not self._accepts():
            code = process.poll()
            if code is not None:
                self._process = None
                raise ServiceError(f"{self.name} on port {self.port} exited with code {code} while starting; "
                                   f"log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self._kill_tree(process)
                self._process = None
                raise ServiceError(f"{self.name} on port {self.port} did not accept connections within "
                                   f"{self.start_timeout_s} s; log tail:\n{self.log_tail()}")
            time.sleep(_POLL_S)

    def stop(self) -> None:
        """Shut the server down cleanly and wait for it to exit (see the module docstring).

        Raises:
            ServiceError: if it is not running, or did not exit within :attr:`stop_timeout_s` (it
                is killed then) or exited with a failure code; the message holds the log tail.
        """
        process = self._running_process("stop")
        process.send_signal(self.stop_signal)
        try:
            code = process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self._kill_tree(process)
            self._process = None
            raise ServiceError(f"{self.name} on port {self.port} did not stop within {self.stop_timeout_s} s "
                               f"of {self.stop_signal.name}; killed; log tail:\n{self.log_tail()}") from None
        self._process = None
        if code != 0:
            raise ServiceError(f"{self.name} on port {self.port} exited with code {code} on "
                               f"{self.stop_signal.name}; log tail:\n{self.log_tail()}")

    def kill(self) -> None:
        """Crash the server: ``SIGKILL`` to it and every process it started, then reap it.

        Raises:
            ServiceError: if it is not running, or a killed process is still alive after
                :attr:`stop_timeout_s`.
        """
        process = self._running_process("kill")
        try:
            self._kill_tree(process)
        finally:
            self._process = None

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` on the same port and directory.

        Raises:
            ServiceError: as :meth:`stop` and :meth:`start` do.
        """
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server (killing it if a clean stop fails), reap it and remove its directory.

        Idempotent. Once closed it cannot start again.

        Raises:
            ServiceError: if a killed process is still alive after :attr:`stop_timeout_s` (the
                directory is removed all the same).
        """
        if self._closed:
            return
        self._closed = True
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                process.send_signal(self.stop_signal)
                try:
                    process.wait(self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    self._kill_tree(process)
        finally:
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)
                self._directory = None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's log ('' when there is none yet)."""
        if self._directory is None or not self.log_path.is_file():
            return ""
        text = self.log_path.read_bytes().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ subclass hooks

    def _prepare(self, directory: Path) -> None:
        """Set the directory up before the first start (e.g. create the database cluster)."""

    @abc.abstractmethod
    def _command(self, directory: Path) -> list[str]:
        """The server's command line (it must stay in the foreground)."""

    @abc.abstractmethod
    def _probe(self) -> bool:
        """Whether the server accepts connections now (it is known to be running)."""

    def _run_as(self) -> dict[str, Any]:
        """Extra :class:`subprocess.Popen` arguments that switch the operating-system user."""
        return {}

    def _own(self, path: Path) -> None:
        """Hand ``path`` to the user the server runs as."""

    # ------------------------------------------------------------------ internals

    def _accepts(self) -> bool:
        return self._process is not None and self._process.poll() is None and self._probe()

    def _running_process(self, action: str) -> subprocess.Popen[bytes]:
        process = self._process
        if process is None or process.poll() is not None:
            raise ServiceError(f"{self.name} on port {self.port}: cannot {action}, it is not running")
        return process

    def _kill_tree(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the server and every process it started, then reap it.

        PostgreSQL's backends lead process groups of their own, so the server's process group is
        not enough: the leader is frozen (``SIGSTOP``, it can fork no more), its descendants are
        read from ``/proc`` (Linux), and all of them are killed. Only called before the leader is
        reaped, so neither its id nor its descendants' (which it has not reaped) belong to anyone else.
        """
        try:
            os.kill(process.pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass  # exited already; it and its group are reaped below
        descendants = _descendants(process.pid)
        for pid in [process.pid, *descendants]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # anything of the group not found above
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
        deadline = time.monotonic() + self.stop_timeout_s
        while (alive := [pid for pid in descendants if _alive(pid)]) and time.monotonic() < deadline:
            time.sleep(_POLL_S)  # SIGKILL is asynchronous: a dying backend may still hold shared memory
        if alive:
            raise ServiceError(f"{self.name} on port {self.port}: processes {alive} still alive "
                               f"{self.stop_timeout_s} s after SIGKILL")


def _process_table() -> dict[int, tuple[int, str]]:
    """Every process's parent id and state letter, from ``/proc`` (empty where there is none)."""
    table: dict[int, tuple[int, str]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                text = handle.read()
        except OSError:
            continue  # it ended while listing
        state, parent = text.rsplit(")", 1)[1].split()[:2]
        table[int(stat.split("/")[2])] = (int(parent), state)
    return table


def _descendants(pid: int) -> list[int]:
    """The ids of every process descended from ``pid`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for child, (parent, _state) in _process_table().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    frontier = [pid]
    while frontier:
        kids = children.get(frontier.pop(), [])
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a zombie has released everything)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class PrivateRedis(_PrivateServer):
    """A private ``redis-server`` with no persistence; see the module docstring.

    Args:
        port: the port to listen on; 0 picks a free one, kept across restarts.
        start_timeout_s: how long :meth:`start` waits for the server to answer ``PING``.
        stop_timeout_s: how long :meth:`stop` waits for the server to exit.
        base_dir: where the temporary directory is created (default: the system's).
        executable: the ``redis-server`` binary; default the one on ``PATH``.

    Raises:
        ServiceError: if an argument is invalid or no ``redis-server`` is found.
    """

    name = "redis"
    stop_signal = signal.SIGTERM

    def __init__(self, *, port: int = 0, start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
                 stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S, base_dir: str | None = None,
                 executable: str | None = None) -> None:
        super().__init__(port=port, start_timeout_s=start_timeout_s, stop_timeout_s=stop_timeout_s,
                         base_dir=base_dir)
        found = executable or shutil.which("redis-server")
        if found is None:
            raise ServiceError("redis: no redis-server on PATH; install Redis 7 or pass executable=")
        self.executable = found

    @classmethod
    def available(cls) -> bool:
        """Whether ``redis-server`` is on ``PATH``."""
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{HOST}:{self.port}/0"

    def _command(self, directory: Path) -> list[str]:
        return [self.executable, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", str(directory), "--daemonize", "no", "--logfile", ""]

    def _probe(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=_PROBE_TIMEOUT_S) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class PrivatePostgres(_PrivateServer):
    """A private PostgreSQL cluster with one database, trust authentication; see the module docstring.

    The first :meth:`start` runs ``initdb`` (superuser ``postgres``, UTF-8, C locale) and creates
    :attr:`database`; later starts reuse the cluster.

    Args:
        database: the database created for the tests.
        driver: the SQLAlchemy driver named in :attr:`url` (the store's tests use psycopg2).
        port: the port to listen on; 0 picks a free one, kept across restarts.
        start_timeout_s: how long :meth:`start` waits for the server to accept connections
            (after a kill this includes crash recovery).
        stop_timeout_s: how long :meth:`stop` waits for the fast shutdown.
        base_dir: where the temporary directory is created (default: the system's); the server's
            user must be able to reach it.
        bin_dir: the directory holding ``initdb``, ``postgres`` and ``pg_isready``; default
            found as :meth:`available` does.
        os_user: the operating-system user the server runs as; default ``postgres`` when running
            as root (PostgreSQL refuses root), else the current user.

    Raises:
        ServiceError: if an argument is invalid, the binaries are not found, or ``os_user`` does
            not exist.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown

    def __init__(self, *, database: str = "test", driver: str = "psycopg2", port: int = 0,
                 start_timeout_s: float = DEFAULT_START_TIMEOUT_S, stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
                 base_dir: str | None = None, bin_dir: str | None = None, os_user: str | None = None) -> None:
        super().__init__(port=port, start_timeout_s=start_timeout_s, stop_timeout_s=stop_timeout_s,
                         base_dir=base_dir)
        if not database.isidentifier() or database != database.lower():
            raise ServiceError(f"postgres: database must be a lowercase identifier, got {database!r}")
        self.database = database
        self.driver = driver
        found = Path(bin_dir) if bin_dir else _postgres_bin_dir()
        if found is None or not all((found / tool).is_file() for tool in _POSTGRES_TOOLS):
            raise ServiceError(f"postgres: {', '.join(_POSTGRES_TOOLS)} not found (bin_dir={bin_dir!r}, PATH, "
                               "/usr/lib/postgresql/*/bin); install the PostgreSQL server")
        self.bin_dir = found
        user = os_user or ("postgres" if os.geteuid() == 0 else None)
        self._user: pwd.struct_passwd | None = None
        if user is not None:
            try:
                self._user = pwd.getpwnam(user)
            except KeyError:
                raise ServiceError(f"postgres: no operating-system user {user!r} to run the server as") from None
            if self._user.pw_uid == 0:
                raise ServiceError("postgres: the server cannot run as root; pass another os_user")

    @classmethod
    def available(cls) -> bool:
        """Whether the PostgreSQL server binaries are found and, as root, a ``postgres`` user exists."""
        if _postgres_bin_dir() is None:
            return False
        if os.geteuid() != 0:
            return True
        try:
            return pwd.getpwnam("postgres").pw_uid != 0
        except KeyError:
            return False

    @property
    def url(self) -> str:
        """``postgresql+<driver>://postgres@127.0.0.1:<port>/<database>``."""
        return f"postgresql+{self.driver}://postgres@{HOST}:{self.port}/{self.database}"

    def _data_dir(self, directory: Path) -> Path:
        return directory / "data"

    def _prepare(self, directory: Path) -> None:
        data = self._data_dir(directory)
        self._tool(["initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
                    "--no-sync"], "initdb")
        # the test database, created in single-user mode: no server, no port, no client needed
        self._tool(["postgres", "--single", "-D", str(data), "-c", "fsync=off", "postgres"],
                   f"create database {self.database}", stdin=f"CREATE DATABASE {self.database};\n")

    def _command(self, directory: Path) -> list[str]:
        settings = {**_POSTGRES_SETTINGS, "port": str(self.port), "unix_socket_directories": str(directory)}
        command = [str(self.bin_dir / "postgres"), "-D", str(self._data_dir(directory))]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        return command

    def _probe(self) -> bool:
        result = subprocess.run([str(self.bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port),
                                 "-U", "postgres", "-d", self.database, "-t", str(_PROBE_TIMEOUT_S)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                check=False)
        return result.returncode == 0

    def _run_as(self) -> dict[str, Any]:
        if self._user is None or self._user.pw_uid == os.geteuid():
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _own(self, path: Path) -> None:
        if self._user is not None and self._user.pw_uid != os.geteuid():
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _tool(self, argv: list[str], what: str, stdin: str | None = None) -> None:
        """Run a PostgreSQL binary as the server's user in the private directory; raise with its output."""
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        try:
            result = subprocess.run(command, input=(stdin or "").encode(), capture_output=True,
                                    cwd=self.directory, timeout=self.start_timeout_s, check=False, **self._run_as())
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(f"postgres on port {self.port}: {what} failed: {exc}") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode("utf-8", errors="replace").strip()
            tail = "\n".join(output.splitlines()[-_LOG_TAIL_LINES:])
            raise ServiceError(f"postgres on port {self.port}: {what} exited with code {result.returncode}:\n{tail}")


def _postgres_bin_dir() -> Path | None:
    """The directory of the PostgreSQL server binaries: that of ``postgres`` on ``PATH`` (links
    resolved), else the newest ``/usr/lib/postgresql/<version>/bin``; None if neither has them all."""
    candidates: list[Path] = []
    on_path = shutil.which("postgres")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versioned, key=lambda p: _version_key(Path(p).parent.name), reverse=True)]
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in _POSTGRES_TOOLS):
            return candidate
    return None


def _version_key(name: str) -> tuple[int, ...]:
    """``"15"`` → ``(15,)``, ``"9.6"`` → ``(9, 6)``; a name that is no version sorts first."""
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return ()
